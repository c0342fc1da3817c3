// GELU, tanh approximation (Hendrycks & Gimpel 2016, Section 2; torch's
// gelu(approximate="tanh")), evaluated in its sigmoid form:
//   a = z (1 + tanh(u/2)) / 2 = z sigmoid(u),   u = 2 c (z + k z^3),
//   c = sqrt(2/pi), k = 0.044715
//   da = sigmoid(u) + z sigmoid(u) sigmoid(-u) 2 c (1 + 3 k z^2)
// sigmoid(u) comes from s = sigmoid(-|u|) as in act_sigmoid.cu, which keeps full
// relative precision in the left tail (1 + tanh(u/2) would cancel there). u may
// overflow to +-inf for huge |z|; that is harmless (s = 0). The derivative's
// polynomial uses z clamped to [-30, 30]: beyond that s underflows to exactly 0 even
// in float64 (|u| > 1900), so nothing changes, but z^2 cannot make 0 * inf.
// Constants are cast to F so that float32 math stays float32 (no double promotion).
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F x = (F)z;
F u = (F)1.5957691216057308 * (x + (F)0.044715 * x * x * x);
F e = exp(-fabs(u));
F s = e / (one + e);
F h = u < 0 ? s : one - s;
a = (T)(x * h);
#if DERIV
F xc = x > (F)30 ? (F)30 : (x < (F)-30 ? (F)-30 : x);
da = (T)(h + xc * s * (one - s) * (F)1.5957691216057308 * (one + (F)0.134145 * xc * xc));
#endif
