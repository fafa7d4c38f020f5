"""Make tests/data/study-store-v1/: a study database written by the store before its split, and its frames."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(sys.argv[1]) / "tests"))
from study_support import answer_through_displays, make_run_folder  # noqa: E402

from studies.service import create_study, invite_raters  # noqa: E402
from studies.store import Screen, Store  # noqa: E402

out = Path(sys.argv[2])
out.mkdir(parents=True, exist_ok=True)
run = make_run_folder(out / "run-tmp", n_images=3, size=16)  # delete it afterwards
db = str(out / "study.sqlite")
create_study(run, db, task=1, methods=("bicubic", "nearest"), per_rater=2, n_catch=1, n_practice=1)
tokens = [t for _, t in invite_raters(db, 2)]
store = Store(db, create=False)
a = store.rater_by_token(tokens[0])
answer_through_displays(store, a.id, lambda t: "left")
b = store.rater_by_token(tokens[1])
t0 = store.trials(b.id)[0]
d = store.issue_display(b.id, t0.assignment_id)
store.display_shown(b.id, d, Screen(1400, 900, 1.5))
store.answer(b.id, d, "up", 0.0)  # a refusal
(out / "tokens.txt").write_text("\n".join(tokens) + "\n")
for name in ("judgments", "refusals", "raters", "assignments"):
    getattr(store, f"{name}_frame")().to_csv(out / f"{name}.csv", index=False)
store.dispose()
