"""Inference: calibrated confidence, offload policies, the offload client and the Agent loop."""

from agent.inference.agent import Agent, AgentConfig, Result
from agent.inference.offload import (
    DEFAULT_MAX_MESSAGE_BYTES,
    CloudAnswer,
    GrpcOffloadClient,
    OffloadClient,
    OffloadFailed,
    OffloadFrame,
    channel_options,
    encode_frame,
)
from agent.inference.policy import AuditSampler, BudgetPolicy, FixedThreshold, OffloadPolicy
from edgefleet.confidence import (
    METRICS,
    calibrated_probabilities,
    confidence_function,
    entropy_confidence,
    margin,
    max_softmax,
)

__all__ = [
    "DEFAULT_MAX_MESSAGE_BYTES",
    "METRICS",
    "Agent",
    "AgentConfig",
    "AuditSampler",
    "BudgetPolicy",
    "CloudAnswer",
    "FixedThreshold",
    "GrpcOffloadClient",
    "OffloadClient",
    "OffloadFailed",
    "OffloadFrame",
    "OffloadPolicy",
    "Result",
    "calibrated_probabilities",
    "channel_options",
    "confidence_function",
    "encode_frame",
    "entropy_confidence",
    "margin",
    "max_softmax",
]
