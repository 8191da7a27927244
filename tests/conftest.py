import os

import pytest
import torch

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
