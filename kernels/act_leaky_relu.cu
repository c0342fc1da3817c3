// Leaky ReLU (Maas, Hannun & Ng 2013): a = z for z > 0, slope z otherwise;
// da = 1 for z > 0, slope otherwise (slope at 0, as torch).
// slope = gpuopt.nn.LEAKY_RELU_SLOPE (0.01), passed from the host.
// in:  T z, F slope
// out: T a, T da if DERIV
F x = (F)z;
a = (T)(x > 0 ? x : slope * x);
#if DERIV
da = (T)(x > 0 ? (F)1 : slope);
#endif
