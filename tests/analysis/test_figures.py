"""Figures: files written, and the expected axes labels, titles and legend entries."""

import matplotlib
import numpy as np
import pandas as pd
import pytest

import analysis
from analysis import figures
from analysis import reference
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


def test_fig2_layout(one_pair, tmp_path):
  fig = figures.fig2_accuracy_vs_n(one_pair.runs, rule='best_k', k=10)
  (ax,) = _visible_axes(fig)
  assert ax.get_xlabel() == 'Layers copied from source, n (0 = base)'
  assert ax.get_ylabel() == 'Target accuracy (fraction)'
  assert ax.get_title() == 'A → B'
  assert _legend_texts(fig) == ['base', 'BnB', 'BnB+', 'AnB', 'AnB+', 'random']
  # One dot per scored run: 3 base + 5 conditions x 2 n x 3 seeds.
  dots = sum(len(c.get_offsets()) for c in ax.collections)
  assert dots == 3 + 5 * 2 * 3
  _check_paper_ready(fig, figures.COLUMN_WIDTH)
  paths = figures.save(fig, tmp_path, 'fig2')
  assert [p.name for p in paths] == ['fig2.png', 'fig2.pdf']
  assert paths[0].read_bytes()[:8] == b'\x89PNG\r\n\x1a\n' and paths[1].read_bytes()[:4] == b'%PDF'


def test_fig2_with_published_reference(one_pair):
  fig = figures.fig2_accuracy_vs_n(one_pair.runs, reference=reference.yosinski2014_points())
  (ax,) = _visible_axes(fig)
  assert ax.get_ylabel() == 'Accuracy / base accuracy (ratio)'
  assert 'Yosinski et al. 2014 (published)' in _legend_texts(fig)
  # The published AnB line reaches n = 7 at 0.5425 / 0.6251.
  ys = [line.get_ydata() for line in ax.lines if len(line.get_xdata()) == 8]
  assert any(np.isclose(y[-1], 0.5425 / 0.6251, atol=2e-4) for y in ys)


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
  # symlog by default: the dense early evaluations (start, slope) stay visible.
  assert axes[0].get_xlabel() == 'Training step on target (symlog)'
  assert axes[0].get_xscale() == 'symlog'
  linear = figures.learning_curves(one_pair.curves, one_pair.runs, key, 'best_k', 10, xscale='linear')
  assert _visible_axes(linear)[0].get_xscale() == 'linear'
  assert _visible_axes(linear)[0].get_xlabel() == 'Training step on target'
  assert _legend_texts(fig) == ['base', 'BnB', 'BnB+', 'AnB', 'AnB+', 'random',
                                'start (first evaluation)', 'mean ± s.d. over seeds',
                                'AUC difference from base', 'asymptote (mean of 10 best)']
  assert fig.get_suptitle() == 'Learning curves, A → B'
  _check_paper_ready(fig, figures.PAGE_WIDTH)


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
  assert names == sorted(f'{s}.{e}' for s in stems for e in ('pdf', 'png'))
  assert all(p.stat().st_size > 1000 for p in paths)


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
  assert all(sum(len(c.get_offsets()) for c in ax.collections) == 2 + 5 * 2 * 2 for ax in axes)
