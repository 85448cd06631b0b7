from vlm_micro.cli import entry

entry()
