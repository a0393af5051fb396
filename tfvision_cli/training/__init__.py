"""Training as named stages that `train`, `tune` and the commands to come compose:

    data.py    setup, paths, open the data, splits, epochs from the data, pipelines
    model.py   build / compile / freeze / finish the model, the test report
    run.py     the run directory: which run, its lifecycle, a worker's scratch files
    loop.py    callbacks and fit

Keras's own Trainer/callbacks split is the model; train.py reads like the keras-io example.
"""
