// ELU (Clevert, Unterthiner & Hochreiter 2016): a = z for z > 0, alpha (exp(z) - 1)
// below; da = 1 or alpha exp(z). alpha = gpuopt.nn.ELU_ALPHA (1.0), from the host.
// expm1 keeps a accurate near 0; xm = min(z, 0) keeps exp from overflowing on the
// branch that is not taken (and keeps NaN: the ternary, unlike fmin, propagates it).
// in:  T z, F alpha
// out: T a, T da if DERIV
F x = (F)z;
F xm = x > 0 ? (F)0 : x;
a = (T)(x > 0 ? x : alpha * expm1(xm));
#if DERIV
da = (T)(x > 0 ? (F)1 : alpha * exp(xm));
#endif
