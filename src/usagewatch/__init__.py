"""usagewatch: usage tracking and prepaid billing for a cloud communications platform."""

__version__ = "0.1.0"
