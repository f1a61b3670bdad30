"""Figures: files written, labels and legends, and the plotted data read back from the artists.

The data checks read what matplotlib was given (Line2D data, error-bar segments, band polygons,
axis transforms), so they fail if a figure moves a mean, widens a CI or distorts an axis.
"""

import matplotlib
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import figures
from analysis import measures
from analysis import reference
from analysis import stats
from tests.analysis.builders import yosinski_like


@pytest.fixture(scope='module')
def one_pair():
  return analysis.analyze(yosinski_like(), n_boot=200)


@pytest.fixture(scope='module')
def two_pairs():
  return analysis.analyze(yosinski_like(seeds=(0,), pairs=(('A', 'B'), ('B', 'A'))), n_boot=200)


def _legend_texts(fig):
  return [t.get_text() for legend in fig.legends for t in legend.get_texts()]


def _visible_axes(fig):
  return [ax for ax in fig.axes if ax.get_visible() and ax.get_label() != '<colorbar>']


def _check_paper_ready(fig, width):
  assert fig.get_figwidth() == pytest.approx(width)
  texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_text() and t.get_visible()]
  assert texts and min(t.get_fontsize() for t in texts) >= 7


def _by_gid(ax, prefix):
  """Artists of ``ax`` whose gid starts with ``prefix``, by gid."""
  found = {}
  for artist in ax.get_children():
    gid = artist.get_gid()
    if gid and gid.startswith(prefix):
      found[gid] = artist
  return found


def _dots(ax):
  return sum(len(c.get_offsets()) for c in _by_gid(ax, 'runs:').values())


def _bar_halfwidths(collection):
  """Half-widths of the vertical error bars of a LineCollection, by bar."""
  return np.array([(seg[:, 1].max() - seg[:, 1].min()) / 2 for seg in collection.get_segments()])


def _hand_runs(**extra):
  """A runs table by hand: base on B (3 seeds) and AnB at n = 1 (3 seeds) and n = 2 (2 seeds)."""
  rows = [('scratch', 0, 'none', s, v) for s, v in enumerate([0.90, 0.92, 0.95])]
  rows += [('transfer', 1, 'A', s, v) for s, v in enumerate([0.80, 0.82, 0.87])]
  rows += [('transfer', 2, 'A', s, v) for s, v in enumerate([0.70, 0.75])]
  runs = pd.DataFrame(rows, columns=['condition', 'n_layers', 'source', 'seed', 'final_last'])
  return runs.assign(fine_tuned=False, target='B', run_id=[f'r{i}' for i in range(len(runs))],
                     label=np.where(runs['condition'] == 'scratch', 'base', 'AnB'), **extra)


def test_fig2_layout(one_pair, tmp_path):
  fig = figures.fig2_accuracy_vs_n(one_pair.runs, rule='best_k', k=10)
  (ax,) = _visible_axes(fig)
  assert ax.get_xlabel() == 'Layers copied from source, n (0 = base)'
  assert ax.get_ylabel() == 'Target accuracy (fraction)'
  assert ax.get_title() == 'A → B'
  assert _legend_texts(fig) == ['base', 'BnB', 'BnB+', 'AnB', 'AnB+', 'random']
  # One dot per scored run: 3 base + 5 conditions x 2 n x 3 seeds, each at its exact n.
  assert _dots(ax) == 3 + 5 * 2 * 3
  for dots in _by_gid(ax, 'runs:').values():
    x = dots.get_offsets()[:, 0]
    assert np.array_equal(x, np.round(x))
  # Every condition's means sit at integer n; base's at n = 0.
  means = _by_gid(ax, 'mean:')
  assert sorted(means) == ['mean:AnB', 'mean:AnB+', 'mean:BnB', 'mean:BnB+', 'mean:base',
                           'mean:random']
  assert list(means.pop('mean:base').get_xdata()) == [0.0]
  assert all(list(m.get_xdata()) == [1.0, 2.0] for m in means.values())
  _check_paper_ready(fig, figures.COLUMN_WIDTH)
  paths = figures.save(fig, tmp_path, 'fig2')
  assert [p.name for p in paths] == ['fig2.png', 'fig2.pdf', 'fig2.caption.txt']
  assert paths[0].read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and paths[1].read_bytes()[:4] == b'%PDF'
  assert paths[2].read_text() == figures.caption_of(fig) + '\n'


def test_fig2_means_and_t_intervals_by_hand():
  runs = _hand_runs()
  fig = figures.fig2_accuracy_vs_n(runs, rule='last', k=10)
  (ax,) = _visible_axes(fig)
  anb = _by_gid(ax, 'mean:AnB')['mean:AnB']
  assert list(anb.get_xdata()) == [1.0, 2.0]
  np.testing.assert_allclose(anb.get_ydata(), [0.83, 0.725])
  halfwidths = _bar_halfwidths(_by_gid(ax, 'ci:AnB')['ci:AnB'])
  # n = 1: s = sqrt(0.0013), t(0.975, 2) = 4.3027: 4.3027 * 0.036056 / sqrt(3) = 0.08957.
  # n = 2: s = 0.035355, t(0.975, 1) = 12.706: 12.706 * 0.035355 / sqrt(2) = 0.31766.
  np.testing.assert_allclose(halfwidths, [0.08957, 0.31766], atol=5e-5)
  np.testing.assert_allclose(halfwidths, [stats.t_halfwidth([0.80, 0.82, 0.87]),
                                          stats.t_halfwidth([0.70, 0.75])])
  base = _by_gid(ax, 'mean:base')['mean:base']
  assert list(base.get_xdata()) == [0.0] and base.get_ydata()[0] == pytest.approx(0.92333333)
  np.testing.assert_allclose(_bar_halfwidths(_by_gid(ax, 'ci:base')['ci:base']),
                             [stats.t_halfwidth([0.90, 0.92, 0.95])])
  # The AnB line starts at base's mean at n = 0.
  line = _by_gid(ax, 'line:AnB')['line:AnB']
  assert line.get_xdata()[0] == 0.0 and line.get_ydata()[0] == pytest.approx(0.92333333)
  text = figures.caption_of(fig)
  assert 'Final score: last evaluation.' in text
  assert 'CI: 95% t interval of the mean over seeds' in text
  assert 'Unit of replication: seed (m = 2-3 runs per point)' in text
  assert 'last evaluation' in fig.get_suptitle() and '95% t CI over seeds' in fig.get_suptitle()


def test_fig2_relative_depth_against_the_paper():
  points = reference.yosinski2014_points()
  runs = _hand_runs()
  fig = figures.fig2_accuracy_vs_n(runs, rule='last', reference=points)
  (ax,) = _visible_axes(fig)
  # Ours at n / L with L = deepest n + 1 = 3; the paper's at n / 8.
  np.testing.assert_allclose(_by_gid(ax, 'mean:AnB')['mean:AnB'].get_xdata(), [1 / 3, 2 / 3])
  published = _by_gid(ax, 'published:AnB')['published:AnB']
  np.testing.assert_allclose(published.get_xdata(), np.arange(8) / 8)
  assert ax.get_xlabel() == 'Relative depth n / L (L = 3 here, 8 in the paper)'
  assert 'L = 3 (deepest n + 1) here and L = 8 in the paper' in figures.caption_of(fig)
  given = figures.fig2_accuracy_vs_n(runs, rule='last', reference=points, depth=8)
  (ax,) = _visible_axes(given)
  np.testing.assert_allclose(_by_gid(ax, 'mean:AnB')['mean:AnB'].get_xdata(), [1 / 8, 2 / 8])
  # Relative to the panel's mean base accuracy.
  np.testing.assert_allclose(_by_gid(ax, 'mean:AnB')['mean:AnB'].get_ydata(),
                             np.array([0.83, 0.725]) / np.mean([0.90, 0.92, 0.95]))


def test_fig2_with_published_reference(one_pair):
  fig = figures.fig2_accuracy_vs_n(one_pair.runs, reference=reference.yosinski2014_points())
  (ax,) = _visible_axes(fig)
  assert ax.get_ylabel() == 'Accuracy / base accuracy (ratio)'
  assert 'Yosinski et al. 2014 (published)' in _legend_texts(fig)
  # The published AnB line reaches n = 7 (7 / 8 of the depth) at 0.5425 / 0.6251.
  anb = _by_gid(ax, 'published:AnB')['published:AnB']
  assert anb.get_xdata()[-1] == 7 / 8
  assert anb.get_ydata()[-1] == pytest.approx(0.5425 / 0.6251, abs=2e-4)


def test_fig2_one_panel_per_direction(two_pairs):
  fig = figures.fig2_accuracy_vs_n(two_pairs.runs)
  assert [ax.get_title() for ax in _visible_axes(fig)] == ['B → A', 'A → B']
  _check_paper_ready(fig, figures.PAGE_WIDTH)


def test_learning_curves_marks_start_slope_asymptote(one_pair):
  key = figures.directions(one_pair.runs)[0]
  fig = figures.learning_curves(one_pair.curves, one_pair.runs, key, 'best_k', 10)
  axes = _visible_axes(fig)
  assert [ax.get_title() for ax in axes] == ['n = 1', 'n = 2']
  assert axes[0].get_ylabel() == 'Target accuracy (fraction)'
  assert axes[0].get_xlabel() == 'Step on target (log2, 0-10 linear)'
  linear = figures.learning_curves(one_pair.curves, one_pair.runs, key, 'best_k', 10, xscale='linear')
  assert _visible_axes(linear)[0].get_xscale() == 'linear'
  assert _visible_axes(linear)[0].get_xlabel() == 'Step on target'
  assert _legend_texts(fig) == ['base', 'BnB', 'BnB+', 'AnB', 'AnB+', 'random',
                                'start (first evaluation)', 'mean, 95% CI over seeds',
                                'AUC difference from base', 'asymptote (mean of 10 best)']
  assert fig.get_suptitle().splitlines()[0] == 'Learning curves, A → B'
  text = figures.caption_of(fig)
  assert 'Final score: mean of the 10 best evaluations.' in text
  assert 'CI: 95% t interval of the mean over seeds' in text
  assert 'Unit of replication: seed (m = 3 runs per point)' in text
  _check_paper_ready(fig, figures.PAGE_WIDTH)
  with pytest.raises(ValueError):
    figures.learning_curves(one_pair.curves, one_pair.runs, key, xscale='log')


def test_learning_curve_step_axis_gives_0_to_1_one_doubling():
  curves = yosinski_like(steps=(0, 1, 2, 4, 8, 16, 32, 64, 100))
  result = analysis.analyze(curves, k=3, n_boot=100)
  key = figures.directions(result.runs)[0]
  ax = _visible_axes(figures.learning_curves(result.curves, result.runs, key, 'best_k', 3))[0]
  x = ax.xaxis.get_transform().transform(np.array([0.0, 1.0, 2.0, 4.0, 64.0]))
  # 0-1 is as wide as 1-2 and 2-4 (one doubling each), not a decade: 64 is 7 doublings from 0.
  np.testing.assert_allclose(np.diff(x[:4]), [1.0, 1.0, 1.0])
  assert x[4] - x[0] == pytest.approx(7.0)
  assert ax.get_xlim()[0] < 0 <= ax.get_xlim()[1]  # Step 0 is on the axis.


def test_learning_curve_bands_are_t_intervals(one_pair):
  key = figures.directions(one_pair.runs)[0]
  ax = _visible_axes(figures.learning_curves(one_pair.curves, one_pair.runs, key, 'best_k', 10))[0]
  runs = one_pair.runs
  ids = runs.loc[(runs['label'] == 'AnB') & (runs['n_layers'] == 1), 'run_id']
  rows = one_pair.curves[one_pair.curves['run_id'].isin(ids)]
  band = _by_gid(ax, 'band:AnB')['band:AnB'].get_paths()[0].vertices
  for step, acc in rows.groupby('step')['accuracy']:
    at = band[np.isclose(band[:, 0], step), 1]
    half = stats.t_halfwidth(acc.to_numpy())
    assert at.min() == pytest.approx(acc.mean() - half) and at.max() == pytest.approx(acc.mean() + half)


def test_heatmap_n_by_condition_with_verdict_marks(one_pair):
  fig = figures.negative_transfer_heatmap(one_pair.summary, 'final_best_k', 0.05, 10)
  ax = _visible_axes(fig)[0]
  assert ax.get_xlabel() == 'Condition' and ax.get_ylabel() == 'Layers copied, n'
  assert [t.get_text() for t in ax.get_xticklabels()] == ['BnB', 'BnB+', 'AnB', 'AnB+', 'random']
  annotations = [t.get_text() for t in ax.texts]
  summary = one_pair.summary[(one_pair.summary['measure'] == 'final_best_k')
                             & (one_pair.summary['label'] == 'random')]
  # random_frozen at n = 2 is 40 points worse on every seed: annotated and starred.
  gap = summary.loc[summary['n_layers'] == 2, 'gap'].iloc[0]
  assert f'{100 * gap:+.1f}*' in annotations
  assert 'Gap (pp)' in fig.axes[-1].get_ylabel()
  _check_paper_ready(fig, figures.COLUMN_WIDTH)


def test_heatmap_source_by_target_for_several_pairs(two_pairs):
  fig = figures.negative_transfer_heatmap(two_pairs.summary, 'final_best_k')
  axes = _visible_axes(fig)
  assert [ax.get_title() for ax in axes] == ['n = 1', 'n = 2', 'n = 1, fine-tuned',
                                             'n = 2, fine-tuned']
  assert axes[0].get_xlabel() == 'Target task' and axes[0].get_ylabel() == 'Source task'
  assert [t.get_text() for t in axes[0].get_yticklabels()] == ['A', 'B', 'random']
  assert all(t.get_text().endswith('†') for t in axes[0].texts)  # one seed per cell


def test_heatmap_refuses_time_to_threshold(one_pair):
  with pytest.raises(ValueError):
    figures.negative_transfer_heatmap(one_pair.summary, 'time_to_threshold')


def test_decomposition_figure(one_pair):
  fig = figures.decomposition_figure(one_pair.decomposition, k=10)
  (ax,) = _visible_axes(fig)
  assert all(list(line.get_xdata()) == [1, 2] for line in _by_gid(ax, 'effect:').values())
  assert 'CI: 95% percentile bootstrap' in figures.caption_of(fig)
  assert ax.get_xlabel() == 'Layers copied, n'
  assert ax.get_ylabel() == 'Accuracy difference (fraction)'
  assert _legend_texts(fig) == ['fragile co-adaptation (base - BnB)', 'specificity (BnB - AnB)',
                                'fine-tuning boost (AnB+ - base)']
  _check_paper_ready(fig, figures.COLUMN_WIDTH)


def test_make_figures_writes_png_and_pdf(two_pairs, tmp_path):
  paths = figures.make_figures(two_pairs, tmp_path, reference='yosinski2014')
  names = sorted(p.name for p in paths)
  stems = ['decomposition', 'fig2_accuracy_vs_n', 'fig2_relative_yosinski2014',
           'learning_curves_A_to_B', 'learning_curves_B_to_A', 'negative_transfer_heatmap']
  assert names == sorted(f'{s}.{e}' for s in stems for e in ('pdf', 'png', 'caption.txt'))
  assert all(p.stat().st_size > 1000 for p in paths if p.suffix != '.txt')
  # Every caption states the final-score rule, the CI method and the unit of replication.
  for path in (p for p in paths if p.suffix == '.txt'):
    text = path.read_text()
    rule = measures.rule_name(measures.DEFAULT_RULE, measures.DEFAULT_K)
    assert f'Final score: {rule}.' in text, path.name
    assert 'CI: 95% ' in text and 'Unit of replication: seed' in text, path.name


def test_heatmap_one_facet_per_stratum():
  a = yosinski_like(seeds=(0, 1)).assign(model='mlp')
  b = yosinski_like(seeds=(0, 1), rng=1).assign(model='cnn')
  b['run_id'] = 'cnn_' + b['run_id']
  result = analysis.analyze(pd.concat([a, b]), n_boot=200)
  fig = figures.negative_transfer_heatmap(result.summary, 'final_best_k')
  assert [ax.get_title() for ax in _visible_axes(fig)] == ['A → B (cnn)', 'A → B (mlp)']


def test_missing_stratum_value_is_its_own_panel():
  full = yosinski_like(seeds=(0, 1)).assign(examples_per_class=None)
  small = yosinski_like(seeds=(0, 1), rng=1).assign(examples_per_class=10)
  small['run_id'] = 'small_' + small['run_id']
  result = analysis.analyze(pd.concat([full, small]), n_boot=200)
  fig = figures.fig2_accuracy_vs_n(result.runs)
  axes = _visible_axes(fig)
  assert len(axes) == 2
  assert all(_dots(ax) == 2 + 5 * 2 * 2 for ax in axes)


def test_reference_overlay_by_relative_depth():
  curves = pd.DataFrame({'group': 'random halves', 'label': 'AnB', 'n_layers': [1, 2, 3],
                         'rel_mean': [0.95, 0.9, 0.8], 'rel_ci95': [0.01, 0.02, np.nan],
                         'count': [5, 5, 1]})
  points = reference.yosinski2014_points()
  fig = figures.reference_overlay(curves, points, rule='best_k', k=10)
  (ax,) = _visible_axes(fig)
  ours = _by_gid(ax, 'reproduced:AnB:')['reproduced:AnB:random halves']
  np.testing.assert_allclose(ours.get_xdata(), [1 / 4, 2 / 4, 3 / 4])  # L = deepest n + 1
  np.testing.assert_allclose(_by_gid(ax, 'published:AnB')['published:AnB'].get_xdata(),
                             np.arange(8) / 8)
  assert ax.get_xlabel() == 'n / L'
  assert 'L = 4 here (deepest n + 1), 8 in the paper' in fig.get_suptitle()
  text = figures.caption_of(fig)
  assert 'Final score: mean of the 10 best evaluations.' in text
  assert 'CI: 95% t interval of the mean over observations' in text
  assert 'Unit of replication: (target, seed) observation (m = 1-5 per point)' in text
  given = figures.reference_overlay(curves, points, depth=8, unit='pair')
  ours = _by_gid(_visible_axes(given)[0], 'reproduced:AnB:')['reproduced:AnB:random halves']
  np.testing.assert_allclose(ours.get_xdata(), [1 / 8, 2 / 8, 3 / 8])
  assert 'Unit of replication: pair.' in figures.caption_of(given)
  assert figures.reference_overlay(curves.assign(label='base'), points) is None


def test_caption_states_rule_ci_and_unit():
  text = figures.caption('last_k', 5, 'CI method X', 'seed', what='Drawn: Y.')
  assert text == ('Drawn: Y. Final score: mean of the last 5 evaluations. CI: CI method X. '
                  'Unit of replication: seed.')
  assert figures.caption(None, 5, 'X', 'seed').startswith('Final score: not used')
