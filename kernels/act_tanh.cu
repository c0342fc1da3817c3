// Hyperbolic tangent: a = tanh(z), da = 1 - a^2 (from the output, as torch's
// tanh backward; in the saturated tails da rounds to 0, an absolute error below
// the storage precision).
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F t = tanh((F)z);
a = (T)t;
#if DERIV
da = (T)(one - t * t);
#endif
