from daydream_luigi.cli import main

main()
