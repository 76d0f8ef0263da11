from roomlog.cli import main

main()
