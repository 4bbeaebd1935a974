"""The one description of the generator (inference.network) and the schedule derived from it."""

from __future__ import annotations

import subprocess
import sys

from inference import graphs, network, schedule
from inference.weights import EXPECTED_SHAPES


def test_levels_follow_the_strides_and_the_upsamples() -> None:
    level = 0
    for entry in network.LAYERS:
        if isinstance(entry, network.Upsample):
            assert entry.level < level
            level = entry.level
        elif isinstance(entry, network.Conv):
            level += entry.stride // 2
            assert entry.level == level, entry.name
        elif isinstance(entry, network.InvertedResBlock):
            assert all(conv.level == level == entry.level for conv in entry.convs)


def test_channels_chain_from_the_image_to_rgb() -> None:
    channels = 3
    for conv in network.convs():
        assert conv.in_ch == channels, conv.name
        channels = conv.out_ch
    assert channels == 3
    blocks = [entry for entry in network.LAYERS if isinstance(entry, network.InvertedResBlock)]
    assert [block.residual for block in blocks] == [False, True, True, True]


def test_only_the_first_blocks_input_still_needs_its_norm() -> None:
    expands = [conv for conv in network.convs() if conv.role == "expand"]
    assert [conv.source for conv in expands] == ["activated", "value", "value", "value"]
    assert next(conv for conv in network.convs() if conv.name == "block_c.5").source == "value"


def test_the_schedule_covers_every_conv_once_in_order() -> None:
    scheduled: list[str] = []
    for step in schedule.STEPS:
        if isinstance(step, schedule.Head):
            scheduled += [step.first.name, step.second.name]
        elif isinstance(step, schedule.BandConv | schedule.UpsampleConv | schedule.Output):
            scheduled.append(step.conv.name)
    assert scheduled == [conv.name for conv in network.convs()]
    transforms = {step.conv.name: step.transform for step in schedule.STEPS if isinstance(step, schedule.BandConv)}
    assert transforms["block_c.1.layers.0"] == "affine"
    assert transforms["block_c.2.layers.0"] == "none"
    assert transforms["block_c.5"] == "none"
    assert transforms["block_b.0"] == "shift"
    assert schedule.WIDEST == (64, 128, 512)


def test_weights_layout_and_graphs_read_the_same_table() -> None:
    assert dict(EXPECTED_SHAPES) == network.state_dict_layout()
    assert graphs.GN_EPS == network.GN_EPS


def test_the_description_imports_nothing_heavy() -> None:
    code = (
        "import sys, inference, inference.network, inference.schedule; "
        "print(sorted(m for m in ('numpy', 'torch', 'onnx', 'onnxruntime') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert out.strip() == "[]"
