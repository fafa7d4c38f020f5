"""The Streamlit rater app (the script `streamlit run` reruns on every interaction): see studies/pages.py.

Run with `evalsuite study serve --db FILE|URL` (or `streamlit run studies/app.py -- --db FILE|URL`).
"""

import sys
from pathlib import Path

# `streamlit run studies/app.py` puts studies/ on the path, not the repository: add it for `import studies`.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from studies.pages import main  # noqa: E402

# Streamlit runs this file as __main__; a multiprocessing child that re-imports it (as __mp_main__) must not.
if __name__ == "__main__":
    main()
