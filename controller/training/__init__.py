"""Training stages of the build (the ``train`` extra: torch CPU, onnx2torch, torch-pruning).

Only the controller imports this package, and only inside the commands and build stages that
train: ``--help``, the agent and a controller without the extra never load torch.

    model = onnx_to_torch(Path("edge.onnx"))                   # torch.fx GraphModule
    data = TrainingSet.from_npz(Path("train.npz"), pre)           # frames -> tensors, bounded
    report = fit(model, data, FitConfig(epochs=3), teacher=soft)  # distillation loss
    export_onnx(model, pre, out / "model.onnx")                   # checked against torch
"""
