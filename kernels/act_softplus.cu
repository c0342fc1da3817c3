// Softplus: a = log(1 + exp(z)) = max(z, 0) + log1p(exp(-|z|)), da = sigmoid(z).
// The right-hand form never overflows and keeps full precision for z << 0 (where
// a = exp(z) is tiny) and z >> 0 (where a = z); da as in act_sigmoid.cu.
// "one" is 1 in the compute type F (and fixes F for CuPy).
// in:  T z, F one
// out: T a, T da if DERIV
F x = (F)z;
F e = exp(-fabs(x));
a = (T)((x > 0 ? x : (F)0) + log1p(e));
#if DERIV
F s = e / (one + e);
da = (T)(x < 0 ? s : one - s);
#endif
