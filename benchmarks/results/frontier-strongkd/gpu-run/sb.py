import sys
from slimbench.cli import main
sys.argv[0] = "slimbench"
main()
