"""The genre mixture scorer (genre_lib/ranking/mixture.py, recommend.genre.scorer=mixture)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from genre_lib.config.settings import load_config
from genre_lib.lake.catalogue import Catalogue
from genre_lib.ranking import blend, mixture
from genre_lib.ranking import model as ranker
from genre_lib.ranking.interest import genre_weights
from tests.test_recommend import tiny_data


def planted(n_users=2000, n_items=60, per_user=10, seed=0):
    """Binary histories drawn from a known mixture over 3 genres of 20 items each, every fourth item
    also in the next genre: (x, membership, tau, phi)."""
    rng = np.random.default_rng(seed)
    member = np.zeros((n_items, 3))
    member[np.arange(n_items), np.arange(n_items) // 20] = 1
    member[np.arange(0, n_items, 4), (np.arange(0, n_items, 4) // 20 + 1) % 3] = 1
    phi = member * rng.lognormal(0, 1.0, (n_items, 1))
    phi /= phi.sum(0)
    tau = rng.dirichlet(np.full(3, 0.3), n_users)
    x = np.zeros((n_users, n_items))
    for u in range(n_users):
        g = rng.choice(3, per_user, p=tau[u])
        x[u, [rng.choice(n_items, p=phi[:, k]) for k in g]] = 1
    return sp.csr_matrix(x), member, tau, phi


def loglik(x, tau, phi):
    c = x.tocoo()
    return float(np.log(np.einsum("eg,eg->e", tau[c.row], phi[c.col])).sum())


def fit(x, member, passes, steps=5):
    phi = mixture.item_start(member, np.asarray(x.sum(0)).ravel())
    for _ in range(passes):
        phi = mixture.item_finish(mixture.item_update(x, phi, mixture.tastes(x, phi, None, steps)), member)
    return mixture.tastes(x, phi, None, steps), phi


def test_em_raises_the_likelihood_and_recovers_a_planted_mixture():
    x, member, tau, phi = planted()
    seen = []
    for passes in (0, 1, 3, 10):
        t, p = fit(x, member, passes)
        assert np.allclose(p.sum(0), 1) and (p[member == 0] == 0).all()  # a distribution on the genre's items
        assert np.allclose(t.sum(1), 1) and (t > 0).all()
        seen.append((loglik(x, t, p), t, p))
    lls = [s[0] for s in seen]
    assert all(b > a for a, b in zip(lls, lls[1:])), lls
    start, fitted = seen[0][2], seen[-1][2]
    # the items' shares within each genre: EM's are nearer the truth than the plug-in start's
    assert np.abs(fitted - phi).sum() < 0.6 * np.abs(start - phi).sum()
    # each user's favourite genre found
    assert (seen[-1][1].argmax(1) == tau.argmax(1)).mean() > 0.8


def test_a_user_without_events_keeps_the_start_and_the_prior_keeps_every_genre():
    x, member, _, _ = planted(n_users=5)
    x = sp.vstack([x, sp.csr_matrix((1, x.shape[1]))]).tocsr()
    phi = mixture.item_start(member, np.asarray(x.sum(0)).ravel())
    start = np.tile([0.7, 0.3, 0.0], (6, 1))
    tau = mixture.tastes(x, phi, start, 5)
    np.testing.assert_allclose(tau[-1], (start[-1] + 1e-6) / (start[-1] + 1e-6).sum())
    assert (tau[:-1] >= mixture.ALPHA / (x.sum(1).max() + 3 * mixture.ALPHA) - 1e-12).all()


def test_the_mixture_scorer_ranks_by_taste_times_share_and_fits_in_user_blocks():
    """recommend's genre component is log(n_items x tau phi' + eps); fit_items over 3 user blocks gives
    the one-fit phi and tastes (test_recommend's block test runs the whole ranking with this form)."""
    from genre_lib.lake.user_blocks import block_of

    cfg = load_config(None, ["recommend.genre.scorer=mixture", "recommend.weights.genre=1"])
    rc, gc = cfg.recommend, cfg.genres
    inter, items, scores, emb = tiny_data()
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]])
    weights = genre_weights(inter, cat, gc, None)
    whole = ranker.fit(inter, cat, weights, rc, gc, cfg.clean.rating_max)
    assert whole.genre_phi.shape == (whole.n_items, len(whole.genres)) and whole.user_taste.shape[0] == whole.n_users
    raw = whole.user_taste @ whole.genre_phi.T * whole.n_items
    np.testing.assert_allclose(blend.component_block(whole, "genre", np.arange(whole.n_users)).numpy(),
                               np.log(raw + blend.GENRE_EPS), rtol=1e-4, atol=1e-4)
    block = block_of(inter["user_id"], 3)
    side = ranker.fit_items(lambda: (inter[block == b] for b in range(3)), cat, rc, cfg.clean.rating_max)
    np.testing.assert_allclose(side.genre_phi, whole.genre_phi, rtol=1e-9, atol=1e-12)
    part = inter[block == 1]
    m = ranker.fit_users(side, part, weights, rc, gc, cfg.clean.rating_max)
    np.testing.assert_allclose(m.user_taste, whole.user_taste[pd.Index(whole.user_ids).get_indexer(m.user_ids)],
                               rtol=1e-9, atol=1e-12)
    # the seed's form is untouched by the setting's fields
    seed = ranker.fit(inter, cat, weights, load_config(None).recommend, gc, cfg.clean.rating_max)
    assert seed.genre_phi is None and seed.user_taste is None


def test_other_genre_scores_reach_every_form_s_item_side():
    """evaluate's genre-labels swaps the true labels in: with_item_genres gives back the fitted fields
    for the fitted scores, and for other scores moves phi's prior (the mixture) and the genre masses
    (popularity) with them; an item without events then ranks by its new genres alone."""
    inter, items, scores, _ = tiny_data()
    inter = inter[inter["item_id"] != "i05"]  # i05 (Drama): no events, a cold item
    cat = Catalogue(items=items, item_genre_scores=scores[["item_id", "genre", "probability"]])
    for form in ("mixture", "popularity"):
        cfg = load_config(None, [f"recommend.genre.scorer={form}"])
        m = ranker.fit(inter, cat, genre_weights(inter, cat, cfg.genres, None), cfg.recommend, cfg.genres, cfg.clean.rating_max)
        same = ranker.with_item_genres(m, m.item_genre, m.item_has_genre)
        for f in ("genre_phi", "genre_scale"):
            if getattr(m, f) is not None:
                np.testing.assert_allclose(getattr(same, f), getattr(m, f), rtol=1e-12, err_msg=f)
        s = m.item_genre.copy()
        i, a, c = list(m.item_ids).index("i05"), m.genres.index("Drama"), m.genres.index("Comedy")
        s[i] = 0.0
        s[i, c] = 1.0  # relabelled Comedy
        other = ranker.with_item_genres(m, s, m.item_has_genre)
        if form == "mixture":
            assert m.genre_phi[i, a] > 0 and m.genre_phi[i, c] == 0
            assert other.genre_phi[i, a] == 0 and other.genre_phi[i, c] > 0
            np.testing.assert_allclose(other.genre_phi.sum(0), 1.0)
        else:
            assert not np.allclose(other.genre_scale, m.genre_scale)
        g = blend.component_block(other, "genre", np.arange(other.n_users)).numpy()[:, i]
        fan = np.argsort(-other.user_genre[:, c])  # users keenest on Comedy rank the relabelled item higher
        assert g[fan[:5]].mean() > g[fan[-5:]].mean()
