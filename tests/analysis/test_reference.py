"""The shipped Yosinski et al. 2014 reference numbers."""

import pandas as pd
import pytest

from analysis import reference


def test_reference_files_ship_with_provenance():
  for name in ('yosinski2014_summary.csv', 'yosinski2014_table.md', 'PROVENANCE.md'):
    assert (reference.REFERENCE_DIR / name).stat().st_size > 0


def test_every_family_is_mapped():
  raw = pd.read_csv(reference.YOSINSKI2014_CSV)
  assert set(raw['family']) <= set(reference.FAMILIES)


def test_tidy_table():
  ref = reference.load_yosinski2014()
  assert ref['score'].notna().all() and len(ref) == 148
  base = ref[ref['family'] == 'base']
  assert (base['condition'] == 'scratch').all() and (base['n_layers'] == 0).all()
  ft = ref[ref['family'] == 'transfer_ft']
  assert (ft['condition'] == 'transfer').all() and ft['fine_tuned'].all()
  assert ref.loc[ref['network'] == 'reduced-0250', 'images_per_class'].item() == 250
  assert len(reference.load_yosinski2014(drop_missing=False)) == 170


@pytest.mark.parametrize('label, n, score, count', [
    ('base', 0, 0.6251, 8), ('BnB', 1, 0.6267, 4), ('BnB', 5, 0.5935, 4), ('AnB', 7, 0.5425, 8),
    ('BnB+', 3, 0.6313, 2), ('AnB+', 2, 0.6358, 2), ('AnB+', 7, 0.6465, 1),
    ('netbase', 0, 0.5763, 1), ('random', 2, 0.4026, 1),
])
def test_points_reproduce_the_published_table(label, n, score, count):
  points = reference.yosinski2014_points()
  row = points[(points['label'] == label) & (points['n_layers'] == n)].iloc[0]
  assert row['score'] == pytest.approx(score, abs=5e-5)
  assert row['count'] == count


def test_random_frozen_is_relative_to_netbase():
  points = reference.yosinski2014_points()
  row = points[(points['label'] == 'random') & (points['n_layers'] == 1)].iloc[0]
  assert row['relative'] == pytest.approx(0.491662 / 0.5763054)
