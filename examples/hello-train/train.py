import time

from cog import BaseModel, Input, Path


class TrainingOutput(BaseModel):
    weights: Path


def train(
    prefix: str = Input(description="The greeting the trained model will use"),
    steps: int = Input(description="Training steps (one log line each)", default=3, ge=1, le=100),
    sleep: float = Input(description="Seconds per step", default=0.0, ge=0, le=60),
) -> TrainingOutput:
    for step in range(1, steps + 1):
        print(f"training step {step}/{steps}")
        time.sleep(sleep)
    weights = Path("weights.txt")
    weights.write_text(prefix)
    print(f"wrote weights: {prefix!r}")
    return TrainingOutput(weights=weights)
