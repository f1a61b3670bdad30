"""``transferbench bench`` (or ``python -m benchmarks.bench`` from the checkout): one small
layer-transfer sweep, three ways, side by side.

1. the harness as users run it (``runner.run_sweep``: one program family, on CPU one run per core
   trained at once in threads, frozen layers' outputs computed once);
2. a naive per-run JAX loop: a fresh ``jax.jit`` per run, host-side batches, a Python loop, the
   per-batch evaluation with a host sync per batch, no packing;
3. an equivalent plain PyTorch loop (CPU build; optional: ``pip install 'transferbench[bench]'``):
   the same MLP, the same copying of layers 1..n from the base nets it trained itself, the same
   freezing (no update, no weight decay), SGD with momentum, weight decay on weight matrices only,
   the same batch order and evaluation schedule.

All three run in one process on the same data (loaded before timing), the same specs (model,
steps, batch size, conditions, seeds). Every column is measured cold, compilation included: the
harness with an empty persistent compilation cache (a temporary directory; a user's second sweep
is faster), the naive loop with the persistent cache off (JAX's default), PyTorch with the
faster of 1 and all CPU threads (measured first, because on a loaded machine OpenMP's spinning
threads can make more threads much slower than one). It then measures the achieved FLOP/s of the
CNN train step against the CPU's peak (the larger of the nominal peak and a large matmul's
FLOP/s), for one run alone and for as many runs at once as the harness trains (XLA's CPU
convolutions use one core each), and prints
``RESULT speedup_vs_naive=... speedup_vs_pytorch=... compiles=... runs=...``.

``--repeats N`` runs N such rounds one after the other, each in a fresh process (so each is cold:
no program compiled in an earlier round survives), and reports the medians: of each method's
seconds, and of each round's own speedups (the three methods side by side under one machine
state), with their range.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import pathlib
import subprocess
import sys
import tempfile
import threading
import time
from typing import Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from harness import (compilation, conditions, engine, models, runner, runs, sweeps, training,
                     transfer)
from harness.errors import UserError


def _config(args) -> ml_collections.ConfigDict:
  config = sweeps.load_sweep('quickstart')
  overrides = [f'--config.seeds={args.seeds}', f'--config.train.steps={args.steps}',
               f'--config.model={args.model}']
  if args.data_dir:
    overrides.append(f'--config.data_dir={args.data_dir}')
  return sweeps.apply_overrides(config, overrides)


def _order(spec, num_train: int) -> np.ndarray:
  return engine.batch_order(spec.seed, spec.target.name, num_train, spec.hyper['steps'],
                            spec.hyper['batch_size'])


# ----------------------------------------------------------------------------------------------
# 2. Naive per-run JAX.

def naive_jax(specs, data_dir) -> float:
  """Every run with its own jit, host batches and per-batch evaluation; returns seconds."""
  start = time.time()
  finals = {}
  for spec in specs:
    hyper = spec.hyper
    data, _, test = runs.device_task(spec.target, data_dir)
    x_train, y_train = data.train
    model = models.build_model(spec.model, data.num_classes, **dict(spec.model_kwargs))
    names = models.layer_names(model.num_layers)
    plan = conditions.make_plan(spec.condition, spec.n_layers, spec.fine_tuned, model.num_layers)
    key = engine.init_key(spec.seed, engine.pair_tag(spec.pair), engine.is_base(plan))
    init = models.init_variables(model, key, data.input_shape)
    variables = transfer.combine(init, finals.get(spec.source_run), plan, names)
    tx = training.make_optimizer(hyper['lr'], hyper['momentum'], hyper['weight_decay'])
    state = training.create_state(variables, plan, names, tx,
                                  jax.random.fold_in(jax.random.key(spec.seed), 2))
    step = jax.jit(functools.partial(training.train_step, model=model, tx=tx))  # one jit per run
    schedule = set(training.eval_steps(hyper['steps'], hyper['eval_every']))
    order = _order(spec, x_train.shape[0])
    for t in range(hyper['steps'] + 1):
      if t in schedule:
        training.evaluate(model, state, test)
      if t == hyper['steps']:
        break
      state, _ = step(state, x_train[order[t]], y_train[order[t]])
    finals[spec.run_id] = {'params': state.params, 'batch_stats': state.batch_stats}
  return time.time() - start


# ----------------------------------------------------------------------------------------------
# 3. PyTorch.

def pytorch(specs, data_dir) -> float | None:
  """The same sweep as a plain PyTorch per-run loop; None if torch is not installed."""
  try:
    import torch
  except ImportError:
    return None
  threads = _torch_threads(torch)
  torch.set_num_threads(threads)
  print(f'PyTorch: {threads} thread(s) (the faster of 1 and {os.cpu_count()} on a probe)', flush=True)
  start = time.time()
  finals = {}
  for spec in specs:
    hyper = spec.hyper
    data = runs.device_task(spec.target, data_dir)[0]
    x_train = torch.from_numpy(np.asarray(data.train[0]).reshape(len(data.train[1]), -1))
    y_train = torch.from_numpy(np.asarray(data.train[1]).astype(np.int64))
    x_test = torch.from_numpy(np.asarray(data.test[0]).reshape(len(data.test[1]), -1))
    y_test = torch.from_numpy(np.asarray(data.test[1]).astype(np.int64))
    widths = [x_train.shape[1], *dict(spec.model_kwargs).get('hidden', (256, 256, 256))]
    torch.manual_seed(spec.seed)
    layers = [torch.nn.Linear(a, b) for a, b in zip(widths[:-1], widths[1:])]
    head = torch.nn.Linear(widths[-1], data.num_classes)
    net = torch.nn.Sequential(*[m for layer in layers for m in (layer, torch.nn.ReLU())], head)
    plan = conditions.make_plan(spec.condition, spec.n_layers, spec.fine_tuned, len(layers) + 1)
    source = finals.get(spec.source_run)
    for i, layer in enumerate(layers):
      if plan.copy[i]:
        layer.load_state_dict(source[i])
      layer.requires_grad_(bool(plan.train[i]))
    groups = [{'params': [p for m in (*layers, head) for p in [m.weight] if p.requires_grad],
               'weight_decay': hyper['weight_decay']},
              {'params': [p for m in (*layers, head) for p in [m.bias] if p.requires_grad],
               'weight_decay': 0.0}]
    opt = torch.optim.SGD(groups, lr=hyper['lr'], momentum=hyper['momentum'])
    loss_fn = torch.nn.CrossEntropyLoss()
    schedule = set(training.eval_steps(hyper['steps'], hyper['eval_every']))
    order = torch.from_numpy(_order(spec, len(y_train)).astype(np.int64))
    for t in range(hyper['steps'] + 1):
      if t in schedule:
        with torch.no_grad():
          logits = net(x_test)
          float(loss_fn(logits, y_test)), float((logits.argmax(-1) == y_test).float().mean())
      if t == hyper['steps']:
        break
      opt.zero_grad(set_to_none=True)
      loss = loss_fn(net(x_train[order[t]]), y_train[order[t]])
      loss.backward()
      opt.step()
    finals[spec.run_id] = [layer.state_dict() for layer in layers]
  return time.time() - start


def _torch_threads(torch, steps: int = 60, evals: int = 2, trials: int = 3) -> int:
  """The faster thread count (1 or all CPUs) for the bench's MLP, measured on a probe.

  The probe mixes training steps and evaluations of a test-set-sized batch as the sweep does,
  because a probe of steps alone picks 1 thread while the evaluation's large matmuls gain from
  more (see docs/performance.md). Each count is
  timed ``trials`` times, alternating, after a warm-up, and its best time counts.
  """
  net = torch.nn.Sequential(torch.nn.Linear(784, 256), torch.nn.ReLU(), torch.nn.Linear(256, 256),
                            torch.nn.ReLU(), torch.nn.Linear(256, 5))
  opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
  x, y = torch.randn(64, 784), torch.zeros(64, dtype=torch.int64)
  x_test = torch.randn(5000, 784)

  def probe(threads: int, count: int, evals: int) -> float:
    torch.set_num_threads(threads)
    start = time.perf_counter()
    for t in range(count):
      if t % (count // evals) == 0:
        with torch.no_grad():
          net(x_test).argmax(-1)
      opt.zero_grad(set_to_none=True)
      torch.nn.functional.cross_entropy(net(x), y).backward()
      opt.step()
    return time.perf_counter() - start

  counts = sorted({1, os.cpu_count() or 1})
  for threads in counts:
    probe(threads, 5, 1)  # warm-up
  timings = {threads: float('inf') for threads in counts}
  for _ in range(trials):
    for threads in counts:
      timings[threads] = min(timings[threads], probe(threads, steps, evals))
  return min(timings, key=timings.get)


# ----------------------------------------------------------------------------------------------
# FLOP/s of the CNN train step against the CPU's peak.

def cpu_peak_flops() -> tuple[float, str]:
  """Peak fp32 FLOP/s = cores x clock x FLOPs/cycle/core, and the formula with its numbers.

  FLOPs/cycle/core assumes two FMA pipes (2 FLOPs each per lane): 2 x 2 x 16 = 64 with AVX-512
  on Intel, 2 x 2 x 8 = 32 with AVX2+FMA or AVX-512 on AMD (Zen 4 executes 512-bit FMAs on
  256-bit pipes); cores are logical CPUs (os.cpu_count()), so SMT siblings count as cores and
  the peak is an upper bound; the clock is the highest 'cpu MHz' in /proc/cpuinfo (no turbo).
  """
  text = pathlib.Path('/proc/cpuinfo').read_text() if pathlib.Path('/proc/cpuinfo').exists() else ''
  flags = set(next((l.split(':', 1)[1].split() for l in text.splitlines() if l.startswith('flags')), []))
  amd = 'AuthenticAMD' in text
  mhz = max([float(l.split(':')[1]) for l in text.splitlines() if l.startswith('cpu MHz')] or [2000.0])
  if 'avx512f' in flags and not amd:
    per_cycle = 64
  elif 'fma' in flags and ('avx2' in flags or 'avx512f' in flags):
    per_cycle = 32
  else:
    per_cycle = 8
  cores = os.cpu_count() or 1
  peak = cores * mhz * 1e6 * per_cycle
  return peak, f'{cores} cores x {mhz / 1000:.2f} GHz x {per_cycle} FLOP/cycle'


def matmul_flops(n: int = 2048, repeats: int = 5) -> float:
  """Best FLOP/s of an (n x n) @ (n x n) float32 matmul under XLA: the practical peak.

  On the 2-core AMD EPYC this was built on it exceeds the nominal peak (the cores run above the
  clock /proc/cpuinfo reports), so the bench reports against the larger of the two.
  """
  a = jnp.ones((n, n), jnp.float32)
  fn = jax.jit(lambda a, b: a @ b)
  fn(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    fn(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n ** 3 / best


def cnn_step_flops(batch_size: int, steps: int = 30,
                   runs_at_once: Sequence[int] = (1,)) -> tuple[float, dict[int, float]]:
  """(FLOPs per step from XLA's cost analysis, {k: seconds per step}) of cnn/small on 28x28x1.

  For each k of ``runs_at_once``, k runs' step loops go in threads side by side (k > 1: as the
  harness trains conv nets on CPU, :func:`harness.engine.concurrent_runs`); the seconds are per
  step of all k together (FLOPs per step x k in that time). One compiled step serves all.
  """
  model = models.build_model('cnn/small', 5)
  names = models.layer_names(model.num_layers)
  plan = conditions.make_plan('scratch', 0, False, model.num_layers)
  tx = training.make_optimizer(0.01, 0.9, 5e-4)
  variables = models.init_variables(model, jax.random.key(0), (28, 28, 1))
  new_state = lambda: training.create_state(variables, plan, names, tx, jax.random.key(1))
  x = jax.random.normal(jax.random.key(2), (batch_size, 28, 28, 1))
  y = jnp.zeros((batch_size,), jnp.int32)
  fn = jax.jit(functools.partial(training.train_step, model=model, tx=tx), donate_argnums=0)
  cost = fn.lower(new_state(), x, y).compile().cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost

  def loop(count: int) -> None:
    state = new_state()
    for _ in range(count):
      state, m = fn(state, x, y)
    jax.block_until_ready(m)

  loop(3)
  seconds = {}
  for k in runs_at_once:
    threads = [threading.Thread(target=loop, args=(steps,)) for _ in range(k)]
    start = time.perf_counter()
    for thread in threads:
      thread.start()
    for thread in threads:
      thread.join()
    seconds[k] = (time.perf_counter() - start) / steps
  return float(cost['flops']), seconds


# ----------------------------------------------------------------------------------------------

def measure_round(args) -> dict:
  """One cold round in this process: the sweep three ways, then the CNN step and the CPU peak.

  Returns the seconds of each method (``torch_s`` None without PyTorch), the programs the harness
  compiled and the CNN and peak figures, for :func:`print_report`.
  """
  cold_cache = tempfile.TemporaryDirectory(prefix='transferbench-bench-cache-')
  os.environ['TRANSFERBENCH_CACHE_DIR'] = cold_cache.name  # the harness measured cold
  compilation.enable_persistent_cache()
  config = _config(args)
  specs = sweeps.expand(config)
  data_dir = config.data_dir or None
  for spec in specs:  # data loaded before any timing, shared by the three
    runs.device_task(spec.target, data_dir)
  print(f'sweep: {len(specs)} runs of {config.model}, {config.train.steps} steps of batch '
        f'{config.train.batch_size}, {config.seeds} seeds, backend {jax.default_backend()} '
        f'({jax.device_count()} device(s), {os.cpu_count()} CPUs)', flush=True)
  with tempfile.TemporaryDirectory() as tmp:
    start = time.time()
    report = runner.run_sweep(config, tmp, progress=False)
    harness_s = time.time() - start
  ex = report.execution
  print(f'harness: {harness_s:.1f} s cold ({ex["strategies"]}; {ex["families"]} family, '
        f'{ex["programs_compiled"]} programs compiled, {ex["concurrent_runs"]} runs at once)',
        flush=True)
  with compilation.persistent_cache_off(), compilation.CompileCounter() as naive_compiles:
    naive_s = naive_jax(specs, data_dir)  # JAX's default: no disk cache
  print(f'naive JAX: {naive_s:.1f} s ({naive_compiles.xla} XLA compilations, '
        f'{naive_compiles.cache_hits} cache hits)', flush=True)
  torch_s = None if args.no_torch else pytorch(specs, data_dir)
  if torch_s is None:
    print('PyTorch: skipped (torch not installed: pip install "transferbench[bench]")')
  else:
    print(f'PyTorch: {torch_s:.1f} s', flush=True)
  at_once = engine.concurrent_runs(0, jax.default_backend(), engine.choose_strategy(
      'auto', jax.default_backend(), 'cnn/small'))
  flops, seconds = cnn_step_flops(config.train.batch_size, steps=args.cnn_steps,
                                  runs_at_once=sorted({1, at_once}))
  nominal, formula = cpu_peak_flops()
  cold_cache.cleanup()
  return dict(harness_s=harness_s, naive_s=naive_s, torch_s=torch_s,
              compiles=ex['programs_compiled'], families=ex['families'], runs=len(specs),
              batch_size=config.train.batch_size, cnn_flops=flops, cnn_step_s=seconds[1],
              cnn_round_s=seconds[at_once], at_once=at_once, nominal=nominal, formula=formula,
              matmul=matmul_flops())


def summarize(rounds: Sequence[dict]) -> dict:
  """The medians over rounds: of each method's seconds and of each round's own speedups.

  A speedup is taken within its round (the three methods side by side, under the same machine
  state) and the median of those is reported, with their range; so are the CNN figures.
  """
  med = lambda values: float(np.median(values))
  torch = all(r['torch_s'] is not None for r in rounds)
  ratios = {'naive': [r['naive_s'] / r['harness_s'] for r in rounds],
            'torch': [r['torch_s'] / r['harness_s'] for r in rounds] if torch else None}
  out = dict(rounds[0])
  out.update({key: med([r[key] for r in rounds])
              for key in ('harness_s', 'naive_s', 'cnn_step_s', 'cnn_round_s', 'matmul')})
  out['torch_s'] = med([r['torch_s'] for r in rounds]) if torch else None
  out['compiles'] = max(r['compiles'] for r in rounds)
  out['speedup'] = {k: (med(v), min(v), max(v)) if v else None for k, v in ratios.items()}
  out['count'] = len(rounds)
  return out


def print_report(summary: dict) -> None:
  """The table, the CNN step against the CPU's peak and the ``RESULT`` line."""
  count, runs_ = summary['count'], summary['runs']
  harness_s = summary['harness_s']
  label = 'seconds' if count == 1 else 'median s'
  print()
  print(f"{'method':<34}{label:>10}{'s/run':>10}{'speedup':>10}"
        + ('' if count == 1 else f'   per round ({count} rounds)'))
  rows = [('harness (transferbench run)', harness_s, None),
          ('naive per-run JAX', summary['naive_s'], summary['speedup']['naive']),
          ('PyTorch per-run loop', summary['torch_s'], summary['speedup']['torch'])]
  for name, secs, speedup in rows:
    if secs is None:
      continue
    ratio, low, high = speedup or (1.0, 1.0, 1.0)
    spread = f'   {low:.2f}-{high:.2f}x' if count > 1 and speedup else ''
    print(f'{name:<34}{secs:>10.1f}{secs / runs_:>10.3f}{ratio:>9.2f}x{spread}')
  nominal, matmul = summary['nominal'], summary['matmul']
  peak = max(nominal, matmul)
  flops, at_once = summary['cnn_flops'], summary['at_once']
  achieved = flops / summary['cnn_step_s']
  print(f"\nCPU peak: nominal {nominal / 1e9:.0f} GFLOP/s ({summary['formula']}); a 2048^3 "
        f'float32 matmul reached {matmul / 1e9:.0f} GFLOP/s; peak = the larger, '
        f'{peak / 1e9:.0f} GFLOP/s')
  print(f"CNN train step (cnn/small, batch {summary['batch_size']}, 28x28x1): "
        f'{flops / 1e9:.3f} GFLOP/step (XLA cost analysis), one run alone: '
        f"{summary['cnn_step_s'] * 1e3:.2f} ms/step = {achieved / 1e9:.1f} GFLOP/s = "
        f'{100 * achieved / peak:.1f}% of peak ({100 * achieved / nominal:.1f}% of nominal)')
  if at_once > 1:
    achieved_n = at_once * flops / summary['cnn_round_s']
    print(f'CNN train steps as the harness runs them ({at_once} runs at once, one per core): '
          f"{summary['cnn_round_s'] * 1e3:.2f} ms per {at_once} steps = "
          f'{achieved_n / 1e9:.1f} GFLOP/s = {100 * achieved_n / peak:.1f}% of peak '
          f'({100 * achieved_n / nominal:.1f}% of nominal)')
  torch_x = summary['speedup']['torch']
  print(f"RESULT speedup_vs_naive={summary['speedup']['naive'][0]:.2f} speedup_vs_pytorch="
        f"{f'{torch_x[0]:.2f}' if torch_x else 'n/a'} compiles={summary['compiles']} "
        f'runs={runs_}')


def _round_in_subprocess(args, index: int) -> dict:
  """One round in a fresh interpreter (cold: no compiled program or cache of an earlier round)."""
  argv = [sys.executable, '-m', 'transferbench.cli', 'bench', '--seeds', str(args.seeds),
          '--steps', str(args.steps), '--model', args.model, '--cnn-steps', str(args.cnn_steps)]
  argv += ['--data-dir', args.data_dir] if args.data_dir else []
  argv += ['--no-torch'] if args.no_torch else []
  with tempfile.TemporaryDirectory() as tmp:
    out = pathlib.Path(tmp) / 'round.json'
    print(f'--- round {index + 1} of {args.repeats} (a fresh process)', flush=True)
    code = subprocess.run([*argv, '--round-json', str(out)], check=False).returncode
    if code or not out.exists():
      raise UserError(f'bench round {index + 1} failed (exit {code}); its output is above')
    return json.loads(out.read_text())


def run_bench(args) -> int:
  """``transferbench bench``: one round here, or ``--repeats N`` rounds summarised by medians."""
  if args.repeats < 1 or args.cnn_steps < 1:
    raise UserError(f'--repeats and --cnn-steps must be at least 1, got {args.repeats} and '
                    f'{args.cnn_steps}')
  if args.round_json:  # a round of --repeats N: its figures go to the parent as JSON
    pathlib.Path(args.round_json).write_text(json.dumps(measure_round(args)))
    return 0
  if args.repeats == 1:
    rounds = [measure_round(args)]
  else:
    rounds = [_round_in_subprocess(args, i) for i in range(args.repeats)]
    times = lambda key: ', '.join(f'{r[key]:.1f}' for r in rounds)
    torch_times = '' if rounds[0]['torch_s'] is None else f"; PyTorch {times('torch_s')}"
    print(f"\nrounds (seconds): harness {times('harness_s')}; naive JAX {times('naive_s')}"
          f'{torch_times}')
  print_report(summarize(rounds))
  return 0


def register(sub) -> None:
  """Adds ``transferbench bench`` to the CLI's subcommands."""
  bench = sub.add_parser(
      'bench', help='time one small sweep: harness vs naive JAX vs PyTorch',
      description='Time one small layer-transfer sweep three ways, side by side: the harness as '
      'users run it, a naive per-run JAX loop, and an equivalent PyTorch loop (optional: pip '
      'install "transferbench[bench]"), each cold, compilation included; then the CNN step\'s '
      'FLOP/s against the CPU\'s peak. Prints RESULT speedup_vs_naive=... speedup_vs_pytorch=... '
      'How each column is measured: benchmarks/bench.py and docs/performance.md.')
  bench.add_argument('--seeds', type=int, default=2, help='seeds of the sweep (default 2)')
  bench.add_argument('--steps', type=int, default=600, help='SGD steps per run (default 600)')
  bench.add_argument('--model', default='mlp/3x256', help='an MLP variant (the PyTorch twin is an MLP)')
  bench.add_argument('--data-dir', help='TFDS data directory')
  bench.add_argument('--no-torch', action='store_true', help='skip the PyTorch column')
  bench.add_argument('--repeats', type=int, default=1,
                     help='rounds, each cold in a fresh process; reports the medians (default 1)')
  bench.add_argument('--cnn-steps', type=int, default=30, help='steps timed for the CNN FLOP/s')
  bench.add_argument('--round-json', help=argparse.SUPPRESS)  # a round of --repeats N
  bench.set_defaults(func=run_bench)


if __name__ == '__main__':  # python -m benchmarks.bench [OPTIONS]: the same as transferbench bench
  from transferbench.cli import main
  sys.exit(main(['bench', *sys.argv[1:]]))
