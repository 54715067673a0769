"""`attention-explorer`: start the app (`streamlit run replica.py`: app.py with its warm start, which loads the
default model as the server starts) from any directory, with the project's own Streamlit configuration
(.streamlit/config.toml), listening on localhost like scripts/run.sh. Extra arguments go to `streamlit run` (a
later --server.address wins)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    app = ROOT / "replica.py"
    if not app.is_file():
        print(f"attention-explorer: no replica.py beside the installed packages ({ROOT}); install the project "
              "editable from its checkout: pip install -e .", file=sys.stderr)
        return 2
    os.chdir(ROOT)  # Streamlit reads .streamlit/config.toml and secrets.toml from the working directory
    from streamlit.web import cli

    sys.argv = ["streamlit", "run", str(app), "--server.address", "localhost",
                *(sys.argv[1:] if argv is None else argv)]
    return cli.main()


if __name__ == "__main__":
    sys.exit(main())
