"""Few-shot adaptation of a trained POYO to sessions it has never seen (``popdecode adapt``).

Read in this order:

- :mod:`popdecode.adapt.labelled`: which trials count as labelled, and the session view
  the trainer sees (train windows around the labelled trials, loss only on them);
- :mod:`popdecode.adapt.new_rows`: checks on the new sessions, new embedding rows and the
  masks of the rows that may change;
- :mod:`popdecode.adapt.adapt`: the unit-id / finetune stages over
  :func:`popdecode.train.trainer.fit`, the from-scratch comparison and the test scores;
- :mod:`popdecode.adapt.curve`: one adaptation per labelled-set size and the learning-curve
  files (``learning_curve.csv``/``.json``/``.png``);
- :mod:`popdecode.adapt.command`: the command line and the layout of the output run.
"""
