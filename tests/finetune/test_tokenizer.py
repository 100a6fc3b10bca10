import numpy as np

from finetune.tokenizer import ActionTokenizer


def test_round_trip_within_half_a_bin_and_tokens_at_vocab_end():
    tok = ActionTokenizer(n_bins=256, vocab_size=32000)
    a = np.random.default_rng(0).uniform(-1, 1, size=(100, 7))
    ids = tok.encode(a)
    assert ids.min() >= 32000 - 256 and ids.max() <= 31999
    assert (ids > tok.action_token_begin_idx).all()
    back = tok.decode(ids)
    bin_width = 2 / 255
    assert np.abs(back - a).max() <= bin_width / 2 + 1e-6


def test_openvla_arithmetic_edges_and_clipping():
    tok = ActionTokenizer(n_bins=256, vocab_size=32000)
    # digitize(-1) = 1 -> token 31999; digitize(1) = 256 -> token 31744 (OpenVLA's mapping)
    assert tok.encode(np.array([-1.0, 1.0])).tolist() == [31999, 31744]
    assert tok.encode(np.array([-5.0, 5.0])).tolist() == [31999, 31744]
    # decode clips the last index onto the last bin centre
    assert np.isclose(tok.decode(np.array([31744]))[0], tok.bin_centers[-1])
    assert np.isclose(tok.decode(np.array([31999]))[0], tok.bin_centers[0])


def test_torch_decode_matches_numpy():
    import torch

    tok = ActionTokenizer(n_bins=256, vocab_size=640)
    ids = np.arange(384, 640)
    assert np.allclose(tok.decode_torch(torch.from_numpy(ids)).numpy(), tok.decode(ids))
