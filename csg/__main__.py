from csg.cli import run_main

run_main()
