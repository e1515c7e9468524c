"""After the deadline: results.json for every experiment whose stages are all done (run_study skips done stages)."""
import os
import sys
from slimbench.data import load_dataset
from slimbench.study.runner import run_study, study_status
from slimbench.study.spec import load_study

study = load_study("studies/brief.yaml")
out, names = sys.argv[1], sys.argv[2:]
states = study_status(study, out, only=names)
for s in states:
    print(f"{s.experiment:32s} {s.index} {s.kind:9s} {s.state:12s} {s.epochs_done}/{s.epochs_planned} val={s.val_acc} test={s.test_acc} wall={s.wall_s} dir={s.directory.name}")
done = [n for n in names if all(s.state == "done" for s in states if s.experiment == n)]
print("complete:", done)
if done:
    run_study(study, out, dataset=load_dataset("cifar10", os.environ["SLIMBENCH_DATA"], download=False), progress=False, only=done)
