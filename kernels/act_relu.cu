// Rectified linear unit: a = max(z, 0), da = [z > 0] (0 at z = 0, as torch).
// Written with a ternary rather than fmax so that NaN propagates (fmax drops it).
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F x = (F)z;
a = (T)(x < 0 ? (F)0 : x);
#if DERIV
da = (T)(x > 0 ? one : (F)0);
#endif
