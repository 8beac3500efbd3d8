"""Document writers for exports and statements: XLSX (XlsxWriter) and PDF (ReportLab)."""
