"""The transformer policy: a distribution over V^L responses that sampling, log_prob and the table agree on."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from gamesim import GamesimError
from gamesim.lm import transformer as tf

CONFIG = dataclasses.replace(tf.CONFIGS["tiny"], contexts=2)


def peaked(params, scale):
    """The same network with its unembedding scaled: far from uniform, so sampling tests have teeth."""
    return {**params, "unembed": scale * params["unembed"]}


@pytest.fixture(scope="module")
def params():
    return peaked(tf.init(jax.random.key(0), CONFIG), 10.0)


@pytest.fixture(scope="module")
def other():
    return peaked(tf.init(jax.random.key(1), CONFIG), 10.0)


@pytest.fixture(scope="module")
def table(params):
    return np.asarray(tf.enumerate_log_probs(params, CONFIG), np.float64)


def assert_frequencies(samples, contexts, table, min_expected=5.0):
    """Pearson χ² per context, responses with expected count < min_expected pooled into one bin."""
    index = np.asarray(tf.tokens_to_index(np.asarray(samples), CONFIG))
    for c in range(CONFIG.contexts):
        counts = np.bincount(index[contexts == c], minlength=CONFIG.num_responses)
        expected = counts.sum() * np.exp(table[c])
        big = expected >= min_expected
        f_obs = np.append(counts[big], counts[~big].sum())
        f_exp = np.append(expected[big], expected[~big].sum())
        assert f_exp[-1] >= min_expected and big.sum() >= 10      # the pooled bin is valid, the test not trivial
        assert stats.chisquare(f_obs, f_exp * f_obs.sum() / f_exp.sum()).pvalue > 1e-3, c


def test_table_is_a_distribution(table):
    assert table.shape == (2, 1024)
    np.testing.assert_allclose(np.exp(table).sum(1), 1.0, atol=1e-6, rtol=0)
    assert np.exp(table).max() > 20 / 1024                      # peaked, not uniform


def test_batched_table_matches_one_batch(params, table):
    """Chunks of 300 (ragged: 1024 = 3·300 + 124) give the same table as one chunk."""
    np.testing.assert_allclose(tf.enumerate_log_probs(params, CONFIG, batch=300), table, atol=0, rtol=1e-6)


@pytest.mark.slow
def test_log_prob_of_samples_matches_table(params, table):
    contexts = jnp.arange(64) % 2
    responses = tf.sample(params, CONFIG, jax.random.key(2), contexts)
    assert responses.shape == (64, CONFIG.length) and responses.dtype == jnp.int32
    index = tf.tokens_to_index(responses, CONFIG)
    lp = tf.log_prob(params, CONFIG, contexts, responses)
    np.testing.assert_allclose(lp, table[np.asarray(contexts), np.asarray(index)], atol=1e-5, rtol=0)
    np.testing.assert_allclose(tf.token_log_probs(params, CONFIG, contexts, responses).sum(1), lp, atol=1e-6)


@pytest.mark.slow
def test_sampling_frequencies_match_table(params, table):
    contexts = np.arange(20000) % 2
    samples = tf.sample(params, CONFIG, jax.random.key(3), contexts)
    assert_frequencies(samples, contexts, table)


@pytest.mark.slow
def test_mixture_sampling_matches_mixture_table(params, other):
    mix = (other, 0.5)
    mixture = np.asarray(tf.enumerate_log_probs(params, CONFIG, mix=mix), np.float64)
    contexts = np.arange(20000) % 2
    assert_frequencies(tf.sample(params, CONFIG, jax.random.key(4), contexts, mix=mix), contexts, mixture)


@pytest.mark.slow
def test_mixture_endpoints_and_normalization(params, other, table):
    index = jnp.arange(CONFIG.num_responses)
    responses, contexts = tf.index_to_tokens(index, CONFIG), jnp.zeros(CONFIG.num_responses, jnp.int32)
    at = {beta: np.asarray(tf.mixture_log_prob(params, other, CONFIG, beta, contexts, responses), np.float64)
          for beta in (0.0, 0.3, 1.0)}
    np.testing.assert_allclose(at[0.0], table[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(at[1.0], tf.enumerate_log_probs(other, CONFIG)[0], atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.exp(at[0.3]).sum(), 1.0, atol=1e-6, rtol=0)
    assert np.abs(at[0.3] - at[0.0]).max() > 0.1                    # the mixture is a third distribution


@pytest.mark.slow
def test_causality(params):
    """Changing y_j leaves the logits predicting y_1..y_j (positions 0..j−1) alone, and moves y_{j+1}'s."""
    inputs = tf._inputs(CONFIG, jnp.array([0, 1]), jnp.array([[0, 1, 2, 3, 0], [3, 3, 2, 1, 0]]))
    logits = tf.apply(params, CONFIG, inputs)
    assert logits.shape == (2, CONFIG.length, CONFIG.vocab)
    for j in range(1, CONFIG.length):
        changed = tf.apply(params, CONFIG, inputs.at[:, j].set((inputs[:, j] + 1) % CONFIG.vocab))
        np.testing.assert_allclose(changed[:, :j], logits[:, :j], atol=1e-6, rtol=0)
        assert np.abs(changed[:, j] - logits[:, j]).max() > 1e-3
    # a prefix of the input gives the prefix's logits
    np.testing.assert_allclose(tf.apply(params, CONFIG, inputs[:, :3]), logits[:, :3], atol=1e-5, rtol=0)


def test_index_bijection():
    index = np.arange(CONFIG.num_responses)
    tokens = tf.index_to_tokens(index, CONFIG)
    assert tokens.shape == (1024, 5) and tokens.min() == 0 and tokens.max() == 3
    np.testing.assert_array_equal(tokens[6], [0, 0, 0, 1, 2])         # 6 = 1·4 + 2, first token most significant
    np.testing.assert_array_equal(tf.tokens_to_index(tokens, CONFIG), index)
    assert len({tuple(t) for t in tokens}) == 1024
    np.testing.assert_array_equal(jax.jit(tf.index_to_tokens, static_argnums=1)(jnp.asarray(index), CONFIG), tokens)
    np.testing.assert_array_equal(tf.tokens_to_index(jnp.asarray(tokens), CONFIG), index)
    big = tf.CONFIGS["medium"]                                          # 16^12 > 2^31: numpy int64
    assert tf.tokens_to_index(tf.index_to_tokens(np.array([big.num_responses - 1]), big), big)[0] == 16 ** 12 - 1


def test_low_temperature_is_greedy(params):
    contexts = jnp.arange(64) % 2
    greedy = tf.sample(params, CONFIG, jax.random.key(5), contexts, temperature=0.0)
    cold = tf.sample(params, CONFIG, jax.random.key(6), contexts, temperature=1e-3)
    np.testing.assert_array_equal(cold, greedy)
    logits = tf.apply(params, CONFIG, tf._inputs(CONFIG, contexts, greedy))
    np.testing.assert_array_equal(jnp.argmax(logits, -1), greedy)      # each token is the argmax given its prefix


@pytest.mark.slow
def test_grad(params):
    contexts, responses = jnp.array([0, 1]), jnp.array([[0, 1, 2, 3, 0], [1, 1, 1, 1, 1]])
    grads = jax.grad(lambda p: tf.log_prob(p, CONFIG, contexts, responses).sum())(params)
    assert jax.tree.structure(grads) == jax.tree.structure(params)
    assert all(bool(jnp.isfinite(g).all()) for g in jax.tree.leaves(grads))


def test_init_shapes_and_scales():
    config = tf.CONFIGS["small"]
    p = tf.init(jax.random.key(0), config)
    assert p["embed"].shape == (8 + 1, 128) and p["pos"].shape == (9, 128) and p["unembed"].shape == (128, 8)
    assert p["layers"]["wq"].shape == (4, 128, 128) and p["layers"]["w_in"].shape == (4, 128, 512)
    assert all(leaf.dtype == jnp.float32 for leaf in jax.tree.leaves(p))
    np.testing.assert_allclose(p["layers"]["wq"].std(), 0.02, rtol=0.02)
    np.testing.assert_allclose(p["layers"]["wo"].std(), 0.02 / np.sqrt(8), rtol=0.02)
    assert config.num_responses == 8 ** 8 and config.d_mlp == 512


@pytest.mark.parametrize("kwargs, match", [
    ({"vocab": 0, "length": 5}, "vocab must be a positive integer"),
    ({"vocab": 4, "length": 2.5}, "length must be a positive integer"),
    ({"vocab": 4, "length": 5, "contexts": 0}, "contexts must be a positive integer"),
    ({"vocab": 4, "length": 5, "d_model": 30, "n_heads": 4}, "not divisible by n_heads"),
    ({"vocab": 4, "length": 5, "n_layers": True}, "n_layers must be a positive integer"),
    ({"vocab": 4, "length": 5, "dtype": "float16"}, "unknown dtype"),
])
def test_invalid_configs(kwargs, match):
    with pytest.raises(GamesimError, match=match):
        tf.ModelConfig(**kwargs)


def test_user_errors(params):
    with pytest.raises(GamesimError, match="not enumerable.*sampling"):
        tf.enumerate_log_probs(None, tf.CONFIGS["small"])
    with pytest.raises(GamesimError, match="temperature"):
        tf.sample(params, CONFIG, jax.random.key(0), jnp.zeros(2, jnp.int32), temperature=-1.0)
    with pytest.raises(GamesimError, match="beta"):
        tf.sample(params, CONFIG, jax.random.key(0), jnp.zeros(2, jnp.int32), mix=(params, 1.5))
    with pytest.raises(GamesimError, match="overflow"):
        tf.index_to_tokens(jnp.arange(3), tf.CONFIGS["medium"])
