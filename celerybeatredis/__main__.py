"""``python -m celerybeatredis``: the same commands as the ``celerybeatredis`` script (``demo`` first)."""

from .cli import main

if __name__ == "__main__":
    main(prog_name="celerybeatredis")
