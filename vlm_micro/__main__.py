import sys

from vlm_micro.cli import main

sys.exit(main())
