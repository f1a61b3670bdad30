"""Small curve tables for the analysis tests."""

import pathlib

import numpy as np
import pandas as pd

FIXTURES = pathlib.Path(__file__).parent / 'fixtures'
HAND = FIXTURES / 'hand_curves.csv'


def run_rows(run_id, condition, n_layers, fine_tuned, source, target, seed, steps, accuracy,
             **extra):
  """Long-format rows of one run."""
  return [dict(run_id=run_id, condition=condition, n_layers=n_layers, fine_tuned=fine_tuned,
               source=source, target=target, seed=seed, step=s, accuracy=a, loss=np.nan, **extra)
          for s, a in zip(steps, accuracy)]


def final_values_study(scratch: list[float], transfer: list[float], transfer_seeds=None,
                       condition: str = 'transfer', n_evals: int = 12) -> pd.DataFrame:
  """Scratch and transfer runs on target B whose every evaluation after step 0 is one value.

  With flat curves, every asymptote rule (k <= n_evals - 1) gives exactly the listed value.
  """
  steps = np.arange(n_evals) * 10
  rows = []
  for seed, value in enumerate(scratch):
    rows += run_rows(f'scratch_{seed}', 'scratch', 0, False, 'none', 'B', seed, steps,
                     [0.1] + [value] * (n_evals - 1))
  seeds = range(len(transfer)) if transfer_seeds is None else transfer_seeds
  source = 'B' if condition == 'selffer' else 'A'
  for seed, value in zip(seeds, transfer):
    rows += run_rows(f'{condition}_{seed}', condition, 2, False, source, 'B', seed, steps,
                     [0.1] + [value] * (n_evals - 1))
  return pd.DataFrame(rows)


def yosinski_like(seeds=(0, 1, 2), ns=(1, 2), pairs=(('A', 'B'),), steps=tuple(range(0, 121, 10)),
                  noise=0.004, rng=0) -> pd.DataFrame:
  """A synthetic study with every condition: saturating curves whose asymptote falls with n."""
  rng = np.random.default_rng(rng)
  steps = np.asarray(steps, float)
  rows = []

  def add(run_id, condition, n, fine_tuned, source, target, seed, asymptote, start):
    acc = asymptote - (asymptote - start) * np.exp(-steps / 25) + rng.normal(0, noise, len(steps))
    rows.extend(run_rows(run_id, condition, n, fine_tuned, source, target, seed, steps,
                         np.clip(acc, 0, 1)))

  targets = sorted({t for pair in pairs for t in pair})
  for target in targets:
    for seed in seeds:
      add(f'base{target}_{seed}', 'scratch', 0, False, 'none', target, seed, 0.9, 0.1)
  for source, target in pairs:
    for n in ns:
      for seed in seeds:
        add(f'{target}{n}{target}_{seed}', 'selffer', n, False, target, target, seed,
            0.9 - 0.01 * n, 0.1 + 0.1 * n)
        add(f'{target}{n}{target}+_{seed}', 'selffer', n, True, target, target, seed, 0.905, 0.2)
        add(f'{source}{n}{target}_{seed}', 'transfer', n, False, source, target, seed,
            0.9 - 0.04 * n, 0.1 + 0.05 * n)
        add(f'{source}{n}{target}+_{seed}', 'transfer', n, True, source, target, seed, 0.91, 0.2)
        add(f'random{n}{target}_{seed}', 'random_frozen', n, False, 'random', target, seed,
            0.9 - 0.2 * n, 0.1)
  return pd.DataFrame(rows)
