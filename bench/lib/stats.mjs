/** Order statistics for the benches' samples. */

/** The `p` quantile of `xs` (0 ≤ p ≤ 1): the sample at rank ⌊p·n⌋, the largest for p = 1. */
export const quantile = (xs, p) => [...xs].sort((a, b) => a - b)[Math.min(xs.length - 1, Math.floor(p * xs.length))];
