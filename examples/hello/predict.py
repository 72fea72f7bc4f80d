from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        """Nothing to load: this model boots instantly."""

    def predict(self, prompt: str = Input(description="Who or what to greet")) -> str:
        return "hello " + prompt
