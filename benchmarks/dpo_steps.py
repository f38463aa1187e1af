"""One framework's DPO steps on dpo.py's batch, with wall AND process-CPU seconds per step (and optionally
torch.profiler over one step), to compare peer versions (docs/benchmarks.md, "Peer versions").

    python benchmarks/dpo_steps.py {trl|bridle} PAIRS_JSONL [--steps N] [--profile STEP] [--tag NAME]

Runs dpo.py's own `child_trl` / `child_bridle` (fp32 variant, 1 warm-up step) in this process; the last stdout
line is JSON: per-step (wall s, CPU s, real tokens), the 1-minute load average at start and end, `versions()`. CPU
seconds show how much of a step's wall time the process actually ran: on a loaded machine wall >> CPU / threads.
With --profile STEP, the table of operators of that step (self CPU, call counts, shapes) is written to
$OUT (default /tmp)/prof-<framework>-<tag>.txt and every operator's (calls, self CPU µs) to the matching .json.
Make PAIRS_JSONL with dpo.build_records (the benchmark's 12 hh-rlhf pairs). To compare transformers versions,
run it with the python of a `python -m venv --system-site-packages` that holds only another transformers.
"""
import argparse
import json
import os
import sys
import tempfile

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.update({"TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
                   "TRANSFORMERS_VERBOSITY": "error", "PYTHONWARNINGS": "ignore", "USE_HUB_KERNELS": "0"})
import common  # noqa: E402
import dpo  # noqa: E402

p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
p.add_argument("framework", choices=("trl", "bridle"))
p.add_argument("data")
p.add_argument("--profile", type=int, default=0, help="profile this step (1-based; 0: none)")
p.add_argument("--steps", type=int, default=2, help="measured steps after 1 warm-up step")
p.add_argument("--tag", default="")
a = p.parse_args()
captured = {}
orig = dpo.summarize


def summarize(step_times, losses, warmup, extra):  # noqa: ANN001, ANN201
    captured["steps"] = [(round(w, 2), round(c, 2), n) for w, c, n in step_times]
    return orig(step_times, losses, warmup, extra)


dpo.summarize = summarize
prof_holder = {}
if a.profile:
    from torch.profiler import ProfilerActivity, profile

    orig_timer, orig_engine = dpo.trl_step_timer, dpo.timed_engine

    def start() -> None:
        prof_holder["p"] = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
        prof_holder["p"].__enter__()

    def stop() -> None:
        prof_holder["p"].__exit__(None, None, None)

    def trl_step_timer(step_times, losses, batch_tokens, log, label="trl"):  # noqa: ANN001, ANN201
        t = orig_timer(step_times, losses, batch_tokens, log, label)
        ob, oe = t.on_step_begin, t.on_step_end

        def b(args, state, control, **kw):  # noqa: ANN001, ANN202
            if state.global_step + 1 == a.profile:
                start()
            return ob(args, state, control, **kw)

        def e(args, state, control, **kw):  # noqa: ANN001, ANN202
            r = oe(args, state, control, **kw)
            if state.global_step == a.profile:
                stop()
            return r

        t.on_step_begin, t.on_step_end = b, e
        return t

    def timed_engine(step_times, losses, log, label="bridle", loss_digits=4):  # noqa: ANN001, ANN201
        base = orig_engine(step_times, losses, log, label, loss_digits)

        class Profiled(base):
            def after_step(self, metrics, tokens):  # noqa: ANN001, ANN202
                done = self.step + 1  # the step just finished (1-based), before the engine advances its counter
                if done == a.profile:
                    stop()
                super().after_step(metrics, tokens)
                if done + 1 == a.profile:
                    start()

        return Profiled

    dpo.trl_step_timer, dpo.timed_engine = trl_step_timer, timed_engine

import torch  # noqa: E402
import transformers  # noqa: E402

print(f"transformers {transformers.__version__} from {transformers.__file__}; torch {torch.__version__} threads "
      f"{torch.get_num_threads()}; load {os.getloadavg()}", file=sys.stderr, flush=True)
child = dpo.child_trl if a.framework == "trl" else dpo.child_bridle
load0 = os.getloadavg()
with tempfile.TemporaryDirectory(prefix="bridle-dpo-steps-") as tmp:
    res = child(a.data, "fp32", a.steps, 1, tmp)
out = {"framework": a.framework, "tag": a.tag, "transformers": transformers.__version__,
       "steps_wall_cpu_tokens": captured["steps"], "first_loss": res.get("first_loss"), "peak_gib": res["peak_gib"],
       "load_1m": [round(load0[0], 2), round(os.getloadavg()[0], 2)], "versions": common.versions()}
if "p" in prof_holder:
    pr = prof_holder["p"]
    path = os.path.join(os.environ.get("OUT", "/tmp"), f"prof-{a.framework}-{a.tag}.txt")
    with open(path, "w") as f:
        f.write(pr.key_averages().table(sort_by="self_cpu_time_total", row_limit=40) + "\n")
        f.write(pr.key_averages(group_by_input_shape=True).table(sort_by="self_cpu_time_total", row_limit=40))
    with open(path.replace(".txt", ".json"), "w") as f:
        json.dump({e.key: [e.count, e.self_cpu_time_total] for e in pr.key_averages()}, f)
    out["profile"] = path
print(json.dumps(out), flush=True)
