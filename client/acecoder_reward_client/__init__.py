"""Client of the AceCoder reward service, and reward functions for trainers (verl, TRL). Needs only httpx."""

from acecoder_reward_client.client import AsyncRewardClient, RetryPolicy, RewardClient
from acecoder_reward_client.errors import (
    InvalidRequestError,
    OverloadedError,
    RewardServiceError,
    UnavailableError,
    UpstreamError,
)
from acecoder_reward_client.types import Item, ItemResult, Limits, RewardResult, TestsResult

__all__ = ["AsyncRewardClient", "InvalidRequestError", "Item", "ItemResult", "Limits", "OverloadedError",
           "RetryPolicy", "RewardClient", "RewardResult", "RewardServiceError", "TestsResult", "UnavailableError",
           "UpstreamError"]
