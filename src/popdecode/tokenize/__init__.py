"""From sessions to model batches, and from predictions back to sessions.

- :mod:`~popdecode.tokenize.tokenizer`: one window of one session -> tokens and targets.
- :mod:`~popdecode.tokenize.unit_dropout`: the training augmentation that drops units.
- :mod:`~popdecode.tokenize.sampler`: which windows to read (training tiles, evaluation steps).
- :mod:`~popdecode.tokenize.collate`: pack windows into a :class:`~popdecode.tokenize.batch.Batch`.
- :mod:`~popdecode.tokenize.dataset`: the PyTorch dataset and DataLoader.
- :mod:`~popdecode.tokenize.stitch`: average overlapping window predictions per sample.
"""
