"""The conditions of a layer-wise transfer study, as one table that every module reads.

A condition (Yosinski et al. 2014) says, for each of the model's L layers, where it starts and how
it trains. Each row of :data:`TABLE` gives its name, its labels in tables and figures (without and
with fine-tuning), where its source network comes from, which n it takes, its plot style, and the
function that builds its per-layer :class:`Plan`:

=============  =====  ===============  ===========================  ======================
condition      n      source           copied                       trained
=============  =====  ===============  ===========================  ======================
scratch        0      none             none                         all (baseA / baseB)
selffer        1..L-1 same task        layers 1..n (from baseB)     n+1..L (all: BnB+)
transfer       1..L-1 other task       layers 1..n (from baseA)     n+1..L (all: AnB+)
random_frozen  1..L-1 random init      none                         n+1..L
reinit_head    L-1    other task       layers 1..L-1 (from baseA)   all
lp_then_ft     L-1    other task       layers 1..L-1 (from baseA)   head, then all (LP-FT)
surgical       1..L   other task       all, head included           layer n only
full_finetune  L      other task       all, head included           all
=============  =====  ===============  ===========================  ======================

A layer that is not copied keeps the target network's own initialisation of the seed. The head
(layer L) is copied only by the rows that declare it (``copies_head``: their plans set
``Plan.copy_head``), for targets with the source's label space (Lee et al. 2023's surgical
fine-tuning: the same classes under a distribution shift); every other row re-initialises it.
``reinit_head`` is "re-initialise only the head, fine-tune all": its n is the number of layers
copied, always L-1, so a sweep's ``n_layers`` does not apply to it. ``surgical`` at n trains only
layer n (the head when n = L); ``full_finetune`` (n = L, the layers copied) trains every layer.
``lp_then_ft`` is Kumar et al. 2022's "linear probe, then fine-tune": the same copy as
``reinit_head``, the head alone trained for the first :data:`LP_FT_SWITCH` of the run, then every
layer at :data:`LP_FT_RATE` times the learning rate (a :class:`Phase`). Linear probing and full
fine-tuning themselves are ``transfer`` at n = L-1 without and with fine-tuning.

Adding a condition is adding a row (and a test of its plans): sweeps, the engine and the analysis
look conditions up here instead of spelling their names. The module imports no JAX, so the
analysis and the command line can read it cheaply.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from harness.errors import UserError

# Where a condition's source network comes from (Condition.source).
NO_SOURCE = 'none'           # a base net: trained from the seed's initialisation
SAME_TASK = 'same_task'      # the base net of the target task (selffer, BnB)
OTHER_TASK = 'other_task'    # the base net of the source task, or a given checkpoint (AnB)
RANDOM_INIT = 'random_init'  # no network: the "copied" layers stay at their random init
SOURCE_ROLES = (NO_SOURCE, SAME_TASK, OTHER_TASK, RANDOM_INIT)


@dataclasses.dataclass(frozen=True)
class Phase:
  """From ``start`` (a fraction of the run's steps, 0 <= start < 1) on, ``train`` replaces the
  plan's learning-rate multipliers (e.g. LP-FT: head only, then every layer from 0.5)."""
  start: float
  train: np.ndarray  # float32 (L,), as Plan.train


@dataclasses.dataclass(frozen=True)
class Plan:
  """Per-layer data of one condition (index i is layer i+1; the last is the head).

  Where a layer starts: copied from the source (``copy``), re-drawn from a fresh key (``fresh``),
  or else the target network's own initialisation for the seed. How it trains: ``train`` is a
  learning-rate multiplier, 0 = frozen (no update, no weight decay, batch-norm statistics fixed),
  1 = trained as usual. ``phases`` switch the multipliers part-way through the run. The head
  (the last layer) is copied only when ``copy_head`` says so: copying it is meaningful only when
  the target has the source's classes, so an undeclared copy is a bug that the engine refuses.
  """
  copy: np.ndarray   # float32 (L,), 1 = copied from the source network
  train: np.ndarray  # float32 (L,), learning-rate multiplier; 0 = frozen
  fresh: np.ndarray | None = None     # float32 (L,), 1 = re-initialised from a fresh key; None = none
  phases: tuple[Phase, ...] = ()      # later phases, in order of start
  copy_head: bool = False  # the plan may copy the head (source and target share the classes)

  @property
  def frozen(self) -> np.ndarray:
    """1 where a layer is frozen in the first phase."""
    return (self.train == 0).astype(np.float32)


@dataclasses.dataclass(frozen=True)
class Style:
  """How a label is drawn: a seaborn 'colorblind' palette index (None: near-black), a marker and a
  line style, so that the figures also read in greyscale."""
  colour: int | None
  marker: str
  linestyle: str


@dataclasses.dataclass(frozen=True)
class NRule:
  """Which n a condition takes, for a model of L layers, and the error that names the fix."""
  allowed: Callable[[int], tuple[int, ...]]
  error: str  # formatted with name, n, L and body (= L - 1)
  free: bool  # True: a sweep chooses n (its n_layers); False: the condition has one n


N_RULES = {
    'zero': NRule(lambda L: (0,), 'condition {name} takes n_layers=0 and fine_tuned=False', False),
    'body': NRule(lambda L: tuple(range(1, L)),
                  'n={n} is out of range for {name}: this model has {body} transferable layers '
                  '(it never copies the head), so use 1 <= n <= {body}', True),
    'whole_body': NRule(lambda L: (L - 1,),
                        'n={n} is out of range for {name}: it copies every layer below the head, '
                        'so n = L-1 = {body} for this model', False),
    'every_layer': NRule(lambda L: tuple(range(1, L + 1)),
                         'n={n} is out of range for {name}: n is the one layer trained, so use '
                         '1 <= n <= {L} (n = {L}: the head)', True),
    'whole_network': NRule(lambda L: (L,),
                           'n={n} is out of range for {name}: it copies every layer, head '
                           'included, so n = L = {L} for this model', False),
}


@dataclasses.dataclass(frozen=True)
class Condition:
  """One row of the registry.

  Attributes:
    name: the ``condition`` of run specs and curves.
    label: its name in tables and figures (Yosinski et al.'s, e.g. ``AnB``).
    label_fine_tuned: the label with fine-tuning (``AnB+``); None where curves never have one.
    fine_tunable: whether the harness trains a fine-tuned variant (``fine_tuned=True``).
    no_fine_tune: the error for ``fine_tuned=True`` when not ``fine_tunable``.
    source: one of :data:`SOURCE_ROLES`.
    n_rule: a key of :data:`N_RULES`.
    build: ``build(n, fine_tuned, L) -> Plan`` (arguments already validated).
    style, style_fine_tuned: plot styles of ``label`` and ``label_fine_tuned``.
    description: one line for help texts.
    copies_head: its plans copy the head from the source (``Plan.copy_head``), so the source
      and target tasks must have the same number of classes.
  """
  name: str
  label: str
  label_fine_tuned: str | None
  fine_tunable: bool
  no_fine_tune: str
  source: str
  n_rule: str
  build: Callable[[int, bool, int], Plan]
  style: Style
  style_fine_tuned: Style | None
  description: str
  copies_head: bool = False


def _first(n: int, num_layers: int) -> np.ndarray:
  return (np.arange(num_layers) < n).astype(np.float32)


def _nothing_copied(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Every layer at the target's own init and trained."""
  return Plan(copy=np.zeros(num_layers, np.float32), train=np.ones(num_layers, np.float32))


def _copy_first_n(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Layers 1..n copied; frozen, or trained too when fine-tuned."""
  first = _first(n, num_layers)
  train = np.ones(num_layers, np.float32) if fine_tuned else 1.0 - first
  return Plan(copy=first, train=train)


def _freeze_first_n(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Layers 1..n frozen at the target's own (random) init."""
  return Plan(copy=np.zeros(num_layers, np.float32), train=1.0 - _first(n, num_layers))


def _copy_first_n_train_all(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Layers 1..n copied, every layer trained."""
  return Plan(copy=_first(n, num_layers), train=np.ones(num_layers, np.float32))


# LP-FT's schedule: the head alone for the first half of the steps (the linear probe), then every
# layer at a tenth of the run's learning rate. Kumar et al. train the probe first and then fine-tune
# at a learning rate tuned on its own; their code sweeps ten times smaller rates for that step than
# for full fine-tuning (ImageNet: 1e-5..1e-4 against 1e-4..1e-3). A fixed split of one budget keeps
# LP-FT's steps equal to FT's (docs/reproductions/lp_ft.md).
LP_FT_SWITCH = 0.5
LP_FT_RATE = 0.1


def _probe_then_train_all(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Layers 1..n copied; the head alone trained, then every layer from :data:`LP_FT_SWITCH` at
  :data:`LP_FT_RATE` times the learning rate."""
  first = _first(n, num_layers)
  return Plan(copy=first, train=1.0 - first,
              phases=(Phase(LP_FT_SWITCH, np.full(num_layers, LP_FT_RATE, np.float32)),))


def _copy_all_train_layer_n(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Every layer copied, the head included; only layer n trained (surgical fine-tuning)."""
  return Plan(copy=np.ones(num_layers, np.float32),
              train=(np.arange(num_layers) == n - 1).astype(np.float32), copy_head=True)


def _copy_all_train_all(n: int, fine_tuned: bool, num_layers: int) -> Plan:
  """Every layer copied, the head included, and every layer trained (full fine-tuning)."""
  return Plan(copy=np.ones(num_layers, np.float32), train=np.ones(num_layers, np.float32),
              copy_head=True)


_ROWS = (
    Condition('scratch', 'base', None, False,
              'condition scratch takes n_layers=0 and fine_tuned=False', NO_SOURCE, 'zero',
              _nothing_copied, Style(None, 'o', '-'), None,
              'base net: every layer from the seed, all trained (also the source networks)'),
    Condition('selffer', 'BnB', 'BnB+', True, '', SAME_TASK, 'body', _copy_first_n,
              Style(0, 'o', '-'), Style(9, 's', '--'),
              'layers 1..n copied from the base net of the same task'),
    Condition('transfer', 'AnB', 'AnB+', True, '', OTHER_TASK, 'body', _copy_first_n,
              Style(3, 'D', '-'), Style(1, '^', '--'),
              'layers 1..n copied from the base net of the other task'),
    Condition('random_frozen', 'random', 'random+', False,
              'random_frozen has no fine-tuned version: its point is that layers 1..n stay at init',
              RANDOM_INIT, 'body', _freeze_first_n, Style(2, 'v', '-'), Style(4, 'X', '--'),
              'layers 1..n frozen at their random init'),
    Condition('reinit_head', 'reinit-head', None, False,
              'reinit_head has no fine-tuned version: it already trains every layer; use '
              'fine_tuned=False', OTHER_TASK, 'whole_body', _copy_first_n_train_all,
              Style(5, 'P', '-.'), None,
              'every layer below the head copied from the other task, head re-initialised, '
              'all trained'),
    Condition('lp_then_ft', 'LP-FT', None, False,
              'lp_then_ft has no fine-tuned version: its second phase already trains every layer; '
              'use fine_tuned=False', OTHER_TASK, 'whole_body', _probe_then_train_all,
              Style(6, 'h', ':'), None,
              'every layer below the head copied from the other task; the head alone trained, '
              'then every layer (linear probe, then fine-tune)'),
    Condition('surgical', 'surgical', None, False,
              'surgical has no fine-tuned version: it trains exactly layer n; full fine-tuning '
              'is the condition full_finetune', OTHER_TASK, 'every_layer', _copy_all_train_layer_n,
              Style(7, 'o', '-'), None,
              'every layer copied from the other task, head included; only layer n trained',
              copies_head=True),
    Condition('full_finetune', 'full-FT', None, False,
              'full_finetune has no fine-tuned version: it already trains every layer; use '
              'fine_tuned=False', OTHER_TASK, 'whole_network', _copy_all_train_all,
              Style(8, 's', '--'), None,
              'every layer copied from the other task, head included; all trained',
              copies_head=True),
)

TABLE: dict[str, Condition] = {row.name: row for row in _ROWS}
CONDITIONS: tuple[str, ...] = tuple(TABLE)
BASE: str = next(row.name for row in _ROWS if row.source == NO_SOURCE)  # the base nets' condition
# Yosinski et al.'s conditions by name, for the analyses that are defined on them (decomposition,
# claim checks, published reference): the only spelling of these names outside the table.
SELFFER, TRANSFER, RANDOM_FROZEN = 'selffer', 'transfer', 'random_frozen'
REINIT_HEAD = 'reinit_head'
LP_FT = 'lp_then_ft'  # Kumar et al. 2022's linear probe, then fine-tune
# Lee et al. 2023's surgical fine-tuning: tune only layer n, against full fine-tuning.
SURGICAL, FULL_FINETUNE = 'surgical', 'full_finetune'
assert {SELFFER, TRANSFER, RANDOM_FROZEN, REINIT_HEAD, LP_FT, SURGICAL, FULL_FINETUNE} <= set(TABLE)


def get(name: str) -> Condition:
  """The registry row of a condition.

  Raises:
    UserError: the name is not in the registry.
  """
  if name not in TABLE:
    raise UserError(f"unknown condition '{name}': choose one of {', '.join(CONDITIONS)}")
  return TABLE[name]


def allowed_n(name: str, num_layers: int) -> tuple[int, ...]:
  """The n a condition takes for a model of ``num_layers`` layers (head included)."""
  return N_RULES[get(name).n_rule].allowed(num_layers)


def sweep_n(name: str, num_layers: int, requested: tuple[int, ...] | list[int]) -> tuple[int, ...]:
  """The n a sweep runs a condition at: its ``n_layers`` (empty: all) when the condition has a free
  n, else the condition's one n.

  Raises:
    UserError: a requested n is out of range for a condition with a free n.
  """
  if not N_RULES[get(name).n_rule].free or not requested:
    return allowed_n(name, num_layers)
  for n in requested:
    validate(name, n, False, num_layers)
  return tuple(requested)


def validate(name: str, n_layers: int, fine_tuned: bool, num_layers: int) -> None:
  """Checks a condition, its n and fine-tuning against a model's depth.

  Args:
    name: a condition of :data:`CONDITIONS`.
    n_layers: n (see the module docstring for what it means per condition).
    fine_tuned: whether the fine-tuned variant is asked for.
    num_layers: L of the model (head included).

  Raises:
    UserError: unknown condition, n out of range, or a fine-tuned variant that does not exist;
      the message names the fix.
  """
  row = get(name)
  rule = N_RULES[row.n_rule]
  if n_layers not in rule.allowed(num_layers):
    raise UserError(rule.error.format(name=name, n=n_layers, L=num_layers, body=num_layers - 1))
  if fine_tuned and not row.fine_tunable:
    raise UserError(row.no_fine_tune)


def make_plan(name: str, n_layers: int, fine_tuned: bool, num_layers: int) -> Plan:
  """The per-layer :class:`Plan` of a condition at n (validated first, see :func:`validate`)."""
  validate(name, n_layers, fine_tuned, num_layers)
  return get(name).build(n_layers, fine_tuned, num_layers)


def with_source(*roles: str) -> tuple[str, ...]:
  """The conditions whose source network has one of ``roles`` (in table order)."""
  return tuple(row.name for row in _ROWS if row.source in roles)


def label(name: str, fine_tuned: bool) -> str:
  """The label of a condition in tables and figures (``AnB``, ``AnB+``, ``base``...)."""
  row = get(name)
  text = row.label_fine_tuned if fine_tuned else row.label
  if text is None:
    raise UserError(f'{name} has no fine-tuned variant: use fine_tuned=False')
  return text


def labels() -> dict[tuple[str, bool], str]:
  """(condition, fine_tuned) -> label for every label of the registry, in plotting order."""
  out = {}
  for row in _ROWS:
    out[(row.name, False)] = row.label
    if row.label_fine_tuned is not None:
      out[(row.name, True)] = row.label_fine_tuned
  return out


def styles() -> dict[str, Style]:
  """label -> :class:`Style` for every label of :func:`labels`."""
  out = {}
  for row in _ROWS:
    out[row.label] = row.style
    if row.label_fine_tuned is not None:
      out[row.label_fine_tuned] = row.style_fine_tuned
  return out


def source_column(name: str, source_task: str | None) -> str | None:
  """The ``source`` column of a run's curves: the source task's name, ``none`` for base nets,
  ``random`` for conditions whose copied layers are random."""
  role = get(name).source
  return {NO_SOURCE: 'none', RANDOM_INIT: 'random'}.get(role, source_task)
