import os
import tempfile
from pathlib import Path

import pytest
import torch

# The pipeline's partitions are read from datasets.yaml when orchestration is imported, so the
# test datasets (tests/datasets.yaml, files under $ANALOGY_TEST_DATA) are set up before any test module.
TEST_DATA = Path(tempfile.mkdtemp(prefix="analogy-test-data-"))
os.environ["ANALOGY_TEST_DATA"] = str(TEST_DATA)
os.environ["ANALOGY_DATASETS"] = str(Path(__file__).parent / "datasets.yaml")
os.environ.setdefault("ANALOGY_HOME", str(TEST_DATA / "default-home"))  # never ./.analogy from a test

torch.set_num_threads(int(os.environ.get("ANALOGY_TEST_THREADS", "2")))


@pytest.fixture(scope="session")
def toy_profile():
    from models.profiles import get_profile

    return get_profile("toy")


@pytest.fixture(scope="session")
def joint_clip(toy_profile):
    from models.loaders import load_clip

    return load_clip(toy_profile.joint_clip, "cpu")


@pytest.fixture(scope="session")
def pipe(toy_profile):
    from models.loaders import load_pipeline

    return load_pipeline(toy_profile, "cpu")
