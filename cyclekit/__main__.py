"""`python -m cyclekit ...`, the form torchrun starts: `torchrun --nproc-per-node 2 -m cyclekit train demo`."""

from cyclekit.cli import main

if __name__ == "__main__":
    main()
