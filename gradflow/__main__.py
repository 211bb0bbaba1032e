"""python -m gradflow"""

from gradflow.cli import main

main()
