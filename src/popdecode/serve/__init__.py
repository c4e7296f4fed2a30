"""Serving: decoding a live spike stream window by window.

Today the streaming entry point is the model's own :meth:`popdecode.model.POYO.decode_window`
(one window's tokens in, the readout at the asked times out), which runs
:mod:`popdecode.model.streaming` (weights folded once; compiled by TorchInductor after
``model.compile_for_inference()``). This package is where the service around it will live:
causal windows cut from a running spike stream, and their timing.
"""
