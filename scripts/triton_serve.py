"""Serve an ONNX classifier on a real Triton Inference Server (NVIDIA PyTriton), for the
controller's Triton cloud-model backend (controller.serving.triton) and its tests.

    .venv-triton/bin/python scripts/triton_serve.py MODEL.onnx NAME --http-port PORT

Runs in its own virtualenv (.venv-triton, scripts/triton-venv.sh): PyTriton needs NumPy < 2.
The model runs in ONNX Runtime inside Triton's Python binding, batch as it comes (Triton's own
dynamic batcher, up to 32 frames). Prints ``ready <http port>`` once Triton answers, then
serves until stdin closes or the process is told to stop. Only the HTTP endpoint (the open
inference protocol, KServe v2) listens, on 127.0.0.1; gRPC and metrics are off.
"""

from __future__ import annotations

import argparse
import sys
import threading


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("model")
    parser.add_argument("name")
    parser.add_argument("--http-port", type=int, required=True)
    parser.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    args = parser.parse_args()

    import numpy as np
    import onnxruntime as ort
    from pytriton.decorators import batch
    from pytriton.model_config import ModelConfig, Tensor
    from pytriton.triton import Triton, TritonConfig

    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    session = ort.InferenceSession(args.model, options, providers=["CPUExecutionProvider"])
    model_input, model_output = session.get_inputs()[0], session.get_outputs()[0]

    @batch
    def infer(**inputs: np.ndarray) -> dict[str, np.ndarray]:
        (x,) = inputs.values()
        return {"output": session.run([model_output.name], {model_input.name: x})[0]}

    config = TritonConfig(
        http_address="127.0.0.1", http_port=args.http_port, allow_grpc=False,
        allow_metrics=False, log_verbose=0,
    )  # fmt: skip
    with Triton(config=config) as triton:
        triton.bind(
            model_name=args.name,
            infer_func=infer,
            inputs=[Tensor(name="input", dtype=np.float32, shape=tuple(model_input.shape[1:]))],
            outputs=[Tensor(name="output", dtype=np.float32, shape=(-1,))],
            config=ModelConfig(max_batch_size=32),
        )
        triton.run()
        print(f"ready {args.http_port}", flush=True)
        stop = threading.Event()
        threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
        stop.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
