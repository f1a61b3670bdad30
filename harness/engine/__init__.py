"""The training engine: one definition of each per-run semantic (:mod:`.semantics`), the
compiled programs of a family (:mod:`.programs`), the frozen-prefix cache (:mod:`.prefix`),
execution strategies as schedules over them (:mod:`.strategies`), the dependency scheduler
(:mod:`.scheduler`) and the sweep executor (:mod:`.execute`)."""

from harness.engine.data import FamilyData, bucket, device_task, family_data, family_shapes
from harness.engine.execute import (ExecutionReport, balanced_pack_size, concurrent_runs,
                                    cpu_cores, default_pack_size, execute)
from harness.engine.prefix import prefix_keys
from harness.engine.programs import programs_compiled
from harness.engine.scheduler import levels, source_status
from harness.engine.semantics import batch_order, dropout_key, init_key, is_base, pair_tag
from harness.engine.strategies import AUTO, STRATEGIES, Strategy, choose_strategy
