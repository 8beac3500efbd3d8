from usagewatch.cli import main

main()
