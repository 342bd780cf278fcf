from clipstyle.cli import main

main()
