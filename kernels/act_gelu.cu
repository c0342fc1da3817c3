// GELU, tanh approximation (Hendrycks & Gimpel 2016, eq. in Section 2; torch's
// gelu(approximate="tanh")):
//   a = z h,  h = (1 + tanh(u)) / 2,  u = c (z + k z^3),  c = sqrt(2/pi), k = 0.044715
//   da = h + z (1 - tanh(u)^2) c (1 + 3 k z^2) / 2
// The polynomial uses z clamped to [-10, 10]: beyond that tanh(u) is exactly +-1 in
// float32 and float64 (u > 43), so nothing changes, but z^3 cannot overflow and the
// derivative's (1 - t^2) (1 + 3 k z^2) cannot become 0 * inf for huge z.
// Constants are cast to F so that float32 math stays float32 (no double promotion).
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F x = (F)z;
F xc = x > (F)10 ? (F)10 : (x < (F)-10 ? (F)-10 : x);
F u = (F)0.7978845608028654 * (xc + (F)0.044715 * xc * xc * xc);
F t = tanh(u);
F h = (F)0.5 * (one + t);
a = (T)(x * h);
#if DERIV
da = (T)(h + (F)0.5 * xc * (one - t * t) * (F)0.7978845608028654 * (one + (F)0.134145 * xc * xc));
#endif
