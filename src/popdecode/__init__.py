"""popdecode: decode behaviour from populations of spiking neurons with POYO.

The package is laid out by pipeline stage, one folder each:

- ``data``: sessions, the on-disk store, importers (NWB, brainsets, npz) and splits.
- ``simulate``: a ground-truth simulator of multi-animal reaching datasets.
- ``tokenize``: windows of a session become POYO tokens; samplers and collation.
- ``model``: the POYO network (rotary attention, PerceiverIO) and its presets.
- ``train``: optimiser, schedule, checkpoints and the training loop.
- ``adapt``: few-shot adaptation to a new session (unit identification, fine-tuning).
- ``evaluate``: stitched evaluation and R^2.
- ``baselines``: Wiener filter, MLP and GRU on binned counts.
- ``report``: the HTML report.
- ``serve``: decoding a live stream (today: ``POYO.decode_window`` in ``model.streaming``).
"""

__version__ = "0.1.0"
