"""The markdown report of `tools.train_benchmark` (its rows as tables)."""


def markdown(info, train_rows, pipe_rows, match_rows, load_start, load_end, options):
    out = []
    out.append(f"Machine: {info['nproc']} cores, {info['cpu']}; TensorFlow {info['tensorflow']}, "
               f"Keras {info['keras']}, SciPy {info['scipy']}, Python {info['python']}. "
               f"Load average (1 min) at start {load_start:.2f}, at end {load_end:.2f}.")
    out.append("")
    out.append("'warm-up s': wall time of the excluded warm-up steps (the first traces "
               "and compiles the step). "
               "'cores busy': CPU seconds of this process per wall second while measuring; "
               "'other procs': cores kept busy by everything else meanwhile (/proc/stat "
               "minus this process), of the reported run; 'runs': measurements made, "
               "the least contended reported. Rows with 'other procs' well above 0 were "
               "measured under contention. The per-row load averages (1-min, exponentially "
               "smoothed) include this benchmark itself and earlier jobs.")
    out.append("")
    if train_rows:
        out.append(f"### Training steps (median over measured steps, {options.warmup} warm-up "
                   "steps excluded)")
        out.append("")
        out.append("| config | crop (HxW) | batch | median ms/step | min-max ms | steps/s "
                   "| crops/s | steps | warm-up s | cores busy | other procs | runs | "
                   "load 1-min (before / after) |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in train_rows:
            out.append(f"| {r['name']} | {r['crop']} | {r['batch']} | {r['ms']:.0f} | "
                       f"{r['min_ms']:.0f}-{r['max_ms']:.0f} | {r['steps_s']:.3f} | "
                       f"{r['crops_s']:.2f} | {r['n']} | {r['warm_s']:.1f} | {r['cpu']:.2f} | "
                       f"{r['other']:.2f} | {r['runs']} | {r['load']} |")
        out.append("")
    if pipe_rows:
        out.append("### Input pipeline alone (`build_dataset(training=True)`, no model)")
        out.append("")
        out.append("| crop (HxW) | data | num_parallel_calls | batch | crops/s | ms/batch "
                   "| batches | cores busy | crops/s per core | other procs | runs | "
                   "load 1-min (before / after) |")
        out.append("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in pipe_rows:
            out.append(f"| {r['crop']} | {r['data']} | {r['parallel']} | {r['batch']} | "
                       f"{r['images_s']:.0f} | {r['ms_batch']:.1f} | {r['n']} | "
                       f"{r['cpu']:.2f} | {r['per_core']:.0f} | {r['other']:.2f} | "
                       f"{r['runs']} | {r['load']} |")
        out.append("")
    if match_rows:
        out.append("### Matcher share of the training step (median over "
                   f"{options.matcher_reps} calls)")
        out.append("")
        out.append("| config | shapes | LxB problems | step ms | `match_outputs` in "
                   "tf.function ms (%) | NumPy body ms (%) | scipy alone ms (%) | "
                   "other procs | runs | load 1-min (before / after) |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
        for r in match_rows:
            out.append(f"| {r['name']} | {r['shape']} | {r['problems']} | {r['step_ms']:.0f} | "
                       f"{r['tf_ms']:.2f} ({r['tf_pct']:.2f}%) | "
                       f"{r['body_ms']:.2f} ({r['body_pct']:.2f}%) | "
                       f"{r['scipy_ms']:.2f} ({r['scipy_pct']:.2f}%) | {r['other']:.2f} | "
                       f"{r['runs']} | {r['load']} |")
        out.append("")
    return "\n".join(out)
