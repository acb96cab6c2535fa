"""The performance tables of the site, rendered from ``benchmarks/results/*.json`` at build time.

Every benchmark script prints one JSON object (``benchmarks/README.md``); a recorded run is that
output saved under ``benchmarks/results/`` (``<benchmark>-<device>.json`` by convention). A
``<!-- benchmark: NAME -->`` marker on a page becomes one table per recorded run of benchmark
``NAME``: shapesafe's figure beside its peer's measured in the same run, the ratio, the machine,
the versions, the date and the command that reproduces it. ``<!-- benchmark: * -->`` renders
the runs of every benchmark that no other marker on the page names. Nothing is computed here
that the JSON does not hold, except ratios of two figures it holds and the formatting.
"""

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

DASH, TIMES = "\u2013", "\u00d7"  # en dash and multiplication sign, as the tables print them
MARKER = re.compile(r"<!--\s*benchmark:\s*([\w*]+)\s*-->")
Rows = list[tuple[str, ...]]


def load(results: Path) -> dict[str, list[tuple[str, dict[str, Any]]]]:
    """``{benchmark: [(file name, result), ...]}`` of every JSON under ``results``."""
    out: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    for path in sorted(results.glob("*.json")):
        result = json.loads(path.read_text())
        out.setdefault(str(result.get("benchmark", path.stem)), []).append((path.name, result))
    return out


def render_page(markdown: str, results: Path) -> str:
    runs = load(results)
    named = set(MARKER.findall(markdown)) - {"*"}

    def replace(match: re.Match[str]) -> str:
        name = match.group(1)
        names = sorted(set(runs) - named) if name == "*" else [name]
        parts = [render_runs(n, runs.get(n, [])) for n in names]
        return "\n\n".join(p for p in parts if p) or (
            "" if name == "*" else f"*No recorded run of `{name}` yet.*"
        )

    return MARKER.sub(replace, markdown)


def render_runs(name: str, runs: list[tuple[str, dict[str, Any]]]) -> str:
    blocks = []
    for file, result in runs:
        table = RENDERERS.get(name, generic)(result)
        blocks.append("\n".join([machine(file, result), "", *markdown_table(table), ""]))
    return "\n".join(blocks)


# -- formatting --------------------------------------------------------------------------------


def num(value: Any, digits: int = 3) -> str:
    """A figure to ``digits`` significant digits (at least its whole part), thousands separated."""
    if value is None:
        return "\u2014"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if not isinstance(value, int | float):
        return str(value)
    if abs(value) < 1:
        return f"{value:.{digits}g}"
    whole = len(str(int(abs(value))))
    return f"{value:,.{max(0, digits - whole)}f}"


def ratio(value: Any) -> str:
    return "—" if value is None else f"**{value:.2f}**"


def spread(q: dict[str, float] | None) -> str:
    """``p25-p75 (min-max)`` of a quantiles dict (with en dashes)."""
    if not q:
        return "—"
    return f"{q['p25']:.2f}{DASH}{q['p75']:.2f} ({q['min']:.2f}{DASH}{q['max']:.2f})"


def markdown_table(rows: Rows) -> list[str]:
    head, *body = rows
    return [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---" for _ in head) + "|",
        *("| " + " | ".join(r) + " |" for r in body),
    ]


def command(result: dict[str, Any]) -> str:
    name = result.get("benchmark", "?")
    params = result.get("parameters", {})
    args = " ".join(
        f"--{k.replace('_', '-')} {v}"
        for k, v in params.items()
        if isinstance(v, int | float | str) and not isinstance(v, bool) and k in ARGS.get(name, ())
    )
    flags = result.get("xla_flags")
    return (
        (f"XLA_FLAGS={flags} " if flags else "")
        + f"python benchmarks/{name}.py"
        + (f" {args}" if args else "")
    )


def machine(file: str, result: dict[str, Any]) -> str:
    device = result.get("device", {})
    versions = result.get("versions", {})
    where = f"{device.get('platform', '?')} ({device.get('device_kind', '?')}"
    if device.get("platform") == "cpu":
        where += f", {device.get('cpu_cores', '?')} cores"
    where += ")"
    torch = result.get("torch")
    torch_device = result.get("torch_device") or (
        torch.get("device") if isinstance(torch, dict) else None
    )
    torch_version = torch.get("version") if isinstance(torch, dict) else torch
    soft = ", ".join(f"{k} {v}" for k, v in versions.items() if k in ("jax", "flax", "python"))
    if torch_version:
        soft += f", PyTorch {torch_version} on {torch_device}"
    load = (
        f"; 1-minute load average {result['load_average_1min']}"
        if "load_average_1min" in result
        else ""
    )
    return (
        f"`{command(result)}` — {result.get('date', 'undated')}, JAX on {where}, {soft}{load} "
        f"(`benchmarks/results/{file}`)."
    )


# -- one table per benchmark -------------------------------------------------------------------


def pair_rows(
    result: dict[str, Any],
    figures: list[tuple[str, str, Callable[[Any], str]]],
    ours: str,
    peer: str,
) -> Rows:
    rows: Rows = [("figure", ours, peer, f"{ours} / {peer}")]
    for key, label, fmt in figures:
        block = result.get(key)
        if not isinstance(block, dict) or ours not in block or peer not in block:
            continue
        a, b = block[ours], block[peer]
        rows.append((label, fmt(a), fmt(b), ratio(block.get("ratio", a / b if b else None))))
    return rows


def core_forward(r: dict[str, Any]) -> Rows:
    rows: Rows = [("figure", "shapesafe", "Flax (by hand)", "shapesafe / Flax")]
    rows.append(
        (
            "jitted forward, ms per call (median of round medians)",
            num(r["median_ms"]["shapesafe"]),
            num(r["median_ms"]["flax"]),
            ratio(r["ratio"]),
        )
    )
    rows.append(
        (f"per-round ratio p25{DASH}p75 (min{DASH}max)", "", "", spread(r.get("ratio_per_round")))
    )
    rows.append(
        (
            "CPU ms per call",
            num(r["cpu_median_ms"]["shapesafe"]),
            num(r["cpu_median_ms"]["flax"]),
            ratio(r["cpu_ratio"]),
        )
    )
    rows.append(
        (
            "compile, s",
            num(r["compile_s"]["shapesafe"]),
            num(r["compile_s"]["flax"]),
            ratio(r["compile_s"]["shapesafe"] / r["compile_s"]["flax"]),
        )
    )
    rows.append(
        (
            "outputs agree (max abs difference)",
            f"{num(r['outputs_agree'])} ({r['max_abs_diff']:g})",
            "",
            "",
        )
    )
    return rows


def build_cost(r: dict[str, Any]) -> Rows:
    rows = pair_rows(
        r,
        [
            ("build_s", "build, wall s", num),
            ("build_cpu_s", "build, CPU s", num),
            ("build_peak_rss_increase_mib", "build, peak RSS increase, MiB", lambda v: num(v, 4)),
            ("trace_cpu_s", "trace (`lower`), CPU s", num),
            ("compile_cpu_s", "compile, CPU s", num),
            ("first_use_s", "first use (trace + compile + first call), wall s", num),
            ("later_call_s", "a later call, wall s", num),
        ],
        "shapesafe",
        "flax",
    )
    rows[0] = ("figure", "shapesafe `ss.build`", "Flax (sizes by hand)", "shapesafe / Flax")
    no_flops = r.get("no_flops_at_build", {})
    forward = no_flops.get("forward_ops_in_build")
    if forward is not None:
        rows.append(
            ("forward operations in the build program", ", ".join(forward) or "none", "", "")
        )
    rows.append(("parameters", f"{r['param_count']:,} ({num(r.get('param_mib'), 4)} MiB)", "", ""))
    return rows


def artifact_memory(r: dict[str, Any]) -> Rows:
    peak, over, sec = r["peak_rss_increase_mib"], r["peak_over_weights"], r["seconds"]
    rows: Rows = [("step", "shapesafe", "peer", "shapesafe / peer")]
    rows.append(
        (
            f"save: peak RSS increase, MiB ({TIMES} the weights)",
            f"{num(peak['shapesafe_save'], 4)} ({over['shapesafe_save']:.2f}{TIMES})",
            f"`save_file`: {num(peak['safetensors_save_file'], 4)} ({over['safetensors_save_file']:.2f}{TIMES})",
            "—",
        )
    )
    rows.append(
        (
            "save: wall s",
            num(sec["shapesafe_save"]),
            num(sec["safetensors_save_file"]),
            ratio(sec["shapesafe_save"] / sec["safetensors_save_file"]),
        )
    )
    rows.append(
        (
            f"load: peak RSS increase, MiB ({TIMES} the weights)",
            f"{num(peak['shapesafe_load'], 4)} ({over['shapesafe_load']:.3f}{TIMES})",
            f"`load_file`: {num(peak['safetensors_load_file'], 4)} ({over['safetensors_load_file']:.2f}{TIMES}); "
            f"then `jnp.asarray`: {num(peak['safetensors_load_file_to_jax'], 4)} "
            f"({over['safetensors_load_file_to_jax']:.2f}{TIMES})",
            ratio(peak["shapesafe_load"] / peak["safetensors_load_file_to_jax"]),
        )
    )
    rows.append(
        (
            "load: wall s",
            num(sec["shapesafe_load"]),
            f"{num(sec['safetensors_load_file'])}; {num(sec['safetensors_load_file_to_jax'])}",
            ratio(sec["shapesafe_load"] / sec["safetensors_load_file_to_jax"]),
        )
    )
    rows.append(
        (
            "weights equal the peer's file",
            num(r["loaded_equals_peer_file"]),
            num(r["artifact_file_equals_peer_file"]),
            "",
        )
    )
    rows.append(
        (
            "weights file",
            f"{num(r['weights_file_mib'], 4)} MiB ({r['param_count']:,} parameters)",
            "",
            "",
        )
    )
    return rows


def per_contender(
    r: dict[str, Any],
    figures: list[tuple[str, str, Callable[[Any], str]]],
    ratios: list[tuple[str, str]],
) -> Rows:
    """A row per contender (shapesafe first), a column per figure and per ratio."""
    first = next(key for key, _, _ in figures if isinstance(r.get(key), dict))
    names = sorted(r[first], key=lambda n: (not n.startswith("shapesafe"), n != "shapesafe", n))
    rows: Rows = [("contender", *(f[1] for f in figures), *(label for _, label in ratios))]
    for n in names:
        cells = [
            fmt(r[key].get(n)) if isinstance(r.get(key), dict) else "—" for key, _, fmt in figures
        ]
        cells += [ratio((r.get(key) or {}).get(n)) for key, _ in ratios]
        rows.append((f"**{n}**" if n.startswith("shapesafe") else n, *cells))
    return rows


def train_overhead(r: dict[str, Any]) -> Rows:
    rows = per_contender(
        r,
        [("us_per_step", "µs per step", num), ("cpu_us_per_step", "CPU µs per step", num)],
        [("ratio_vs_pure_jax", "vs pure JAX"), ("cpu_ratio_vs_pure_jax", "CPU, vs pure JAX")],
    )
    rows[0] = (*rows[0], f"per-round ratio p25{DASH}p75 (min{DASH}max)")
    per_round = r.get("ratio_vs_pure_jax_per_round", {})
    return [rows[0], *((*row, spread(per_round.get(row[0].strip("*")))) for row in rows[1:])]


def train_throughput(r: dict[str, Any]) -> Rows:
    rows = per_contender(
        r,
        [
            ("images_per_s", "images/s", num),
            ("cpu_ms_per_step", "CPU ms per step", num),
            ("first_loss", "first loss", lambda v: f"{v:.6f}"),
        ],
        [("ratio_vs_flax", "vs Flax"), ("ratio_vs_torch", "vs PyTorch")],
    )
    rows[0] = (*rows[0], f"vs Flax per round, p25{DASH}p75 (min{DASH}max)")
    per_round = r.get("ratio_vs_flax_per_round", {})
    return [rows[0], *((*row, spread(per_round.get(row[0].strip("*")))) for row in rows[1:])]


def data_pipeline(r: dict[str, Any]) -> Rows:
    rows = per_contender(
        r,
        [
            ("images_per_s", "images/s", num),
            ("cpu_ms_per_image", "CPU ms per image", num),
            ("page_faults_per_image", "page faults per image", num),
        ],
        [],
    )
    q, qs = r["ratio_to_best_peer"], r["ratio_with_scan_to_best_peer"]
    rows.append(
        (
            "shapesafe / best peer, per round: median",
            ratio(q["median"]),
            f"p25{DASH}p75 (min{DASH}max): {spread(q)}",
            f"counting the header scan: {qs['median']:.2f}",
        )
    )
    checks = r.get("spec_check_us_per_element", {})
    rows.append(("spec check per element, µs", num(checks.get("check")), "", ""))
    return rows


def data_wait(r: dict[str, Any]) -> Rows:
    rows: Rows = [
        (
            "pipeline",
            "share of step time waiting for data",
            "epoch time, s",
            "epoch time / in memory",
        )
    ]
    for name in r["wait_share"]:
        rows.append(
            (
                f"**{name}**" if name == "cached" else name,
                f"{100 * r['wait_share'][name]:.1f} %",
                num(r["epoch_s"][name]),
                ratio(r["epoch_ratio"][name]),
            )
        )
    return rows


def fit_overhead(r: dict[str, Any]) -> Rows:
    a, b, c = r["a_repeat_fit_s"], r["b_fit_10_epochs_s"], r["c_pipeline_us_per_batch"]
    d, dr = r["d_per_step_us"], r["d_ratio_vs_pure_jax"]
    rows: Rows = [("figure", "shapesafe", "peer (same run)", "shapesafe / peer")]
    rows.append(
        (
            "(a) a repeated `fit` call, 1 epoch, s",
            num(a["shapesafe"]),
            f"pure JAX {num(a['pure_jax'])}"
            + (f"; Keras {num(a['keras'])}" if "keras" in a else ""),
            ratio(a["ratio_vs_pure_jax"]),
        )
    )
    rows.append(
        (
            "(b) 10 epochs of `fit` on `from_arrays(...).shuffle().batch(32)`, s",
            num(b["shapesafe"]),
            f"pure JAX {num(b['pure_jax'])}",
            ratio(b["ratio"]),
        )
    )
    rows.append(
        (
            "(c) iterating that pipeline, µs per batch",
            num(c["shapesafe"]),
            f"permutation slicing {num(c['permutation_slicing'])}",
            f"{num(c['fraction_of_pure_jax_step'])} of a pure JAX step",
        )
    )
    for k in ("shapesafe_spc1", "shapesafe_spc10", "shapesafe_spc200"):
        if k in d:
            rows.append(
                (
                    f"(d) `fit` over 200 NumPy batches, steps_per_call={k.split('spc')[1]}, µs per step",
                    num(d[k]),
                    f"pure JAX {num(d['pure_jax'])}",
                    ratio(dr[k]),
                )
            )
    for k in ("keras_spe1", "keras_spe32"):
        if k in d:
            rows.append(
                (
                    f"(d) Keras, steps_per_execution={k.split('spe')[1]}, µs per step",
                    "—",
                    num(d[k]),
                    f"Keras / pure JAX {ratio(dr[k])}",
                )
            )
    return rows


def first_step(r: dict[str, Any]) -> Rows:
    rows: Rows = [
        (
            "size",
            "contender",
            "build, s",
            "first step, s",
            "build + first step, s",
            "a step, s",
            "overhead, s",
            "vs pure JAX",
        )
    ]
    for size, block in r["results"].items():
        base = block["pure_jax"]["overhead_s"]
        for name in ("shapesafe", "shapesafe_cached", "pure_jax", "pytorch"):
            if name in block:
                f = block[name]
                rows.append(
                    (
                        size,
                        f"**{name}**" if name.startswith("shapesafe") else name,
                        num(f["build_s"]),
                        num(f["first_step_s"]),
                        num(f.get("to_first_step_s")),
                        num(f["step_s"]),
                        num(f["overhead_s"]),
                        ratio(f["overhead_s"] / base) if base else "—",
                    )
                )
    return rows


def generic(r: dict[str, Any]) -> Rows:
    rows: Rows = [("figure", "value")]
    for key, value in r.items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            rows.append((key, num(value)))
        elif isinstance(value, dict) and all(isinstance(v, int | float) for v in value.values()):
            rows.append((key, ", ".join(f"{k} {num(v)}" for k, v in value.items())))
    return rows


RENDERERS: dict[str, Callable[[dict[str, Any]], Rows]] = {
    "core_forward": core_forward,
    "build_cost": build_cost,
    "artifact_memory": artifact_memory,
    "train_overhead": train_overhead,
    "train_cnn": train_throughput,
    "train_resnet": train_throughput,
    "data_pipeline": data_pipeline,
    "data_wait": data_wait,
    "fit_overhead": fit_overhead,
    "first_step": first_step,
}

ARGS = {  # the command-line options of each script, in the names its JSON uses
    "fit_overhead": ("rounds", "steps"),
    "first_step": ("sizes",),
    "core_forward": ("size", "batch", "rounds", "repeats", "warmup", "seed", "peer_pool"),
    "build_cost": ("size", "batch", "repeats", "seed"),
    "artifact_memory": ("size", "repeats", "seed"),
    "train_overhead": ("batch", "hidden", "rounds", "repeats", "warmup", "seed"),
    "train_cnn": ("size", "batch", "rounds", "repeats", "warmup", "lr", "seed"),
    "train_resnet": (
        "size",
        "batch",
        "classes",
        "blocks",
        "rounds",
        "repeats",
        "warmup",
        "lr",
        "momentum",
        "seed",
    ),
    "data_pipeline": ("images", "batch", "workers", "rounds"),
    "data_wait": ("size", "photos", "workers", "epochs", "passes"),
}
