"""`python -m cyclekit.cli ...` (the tests' form), the same as the `cyclekit` command."""

from cyclekit.cli import main

if __name__ == "__main__":
    main()
