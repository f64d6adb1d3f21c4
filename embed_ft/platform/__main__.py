"""``python -m embed_ft.platform serve|stop|status``: the same commands as ``embed-ft platform`` (see ``cli.py``)."""

from .cli import platform_group

if __name__ == "__main__":
    platform_group(prog_name="python -m embed_ft.platform")
