//! What the host kernels (`cpu_conv`, `cpu_norm`) share: which backends they serve, and moving
//! tensors between those backends and host slices without copying where the backend allows it.
//!
//! A backend is recognised by its `TypeId`, so the kernels attach to flex and ndarray (with and
//! without autodiff) and never to a GPU backend, whatever its name.

use std::any::{Any, TypeId};
use std::borrow::Cow;

use burn::tensor::backend::Backend;
use burn::tensor::ops::FloatTensor;
use burn::tensor::{DType, Element, Tensor, TensorData, TensorPrimitive};

/// The element types the host kernels compute in (f32 and f64).
pub trait Real:
    Copy
    + Send
    + Sync
    + 'static
    + std::ops::AddAssign
    + std::ops::Add<Output = Self>
    + std::ops::Mul<Output = Self>
    + PartialOrd
    + Element
    + std::fmt::Debug
{
    const ZERO: Self;
    const ONE: Self;
    fn to_f64(self) -> f64;
    fn from_f64(v: f64) -> Self;
    /// The values of a contiguous flex tensor of this dtype, borrowed.
    #[cfg(feature = "flex")]
    fn flex_slice(t: &burn::backend::flex::FlexTensor) -> Option<&[Self]>;
}

impl Real for f32 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn to_f64(self) -> f64 {
        self as f64
    }
    fn from_f64(v: f64) -> Self {
        v as f32
    }
    #[cfg(feature = "flex")]
    fn flex_slice(t: &burn::backend::flex::FlexTensor) -> Option<&[Self]> {
        t.as_slice::<f32>()
    }
}

impl Real for f64 {
    const ZERO: Self = 0.0;
    const ONE: Self = 1.0;
    fn to_f64(self) -> f64 {
        self
    }
    fn from_f64(v: f64) -> Self {
        v
    }
    #[cfg(feature = "flex")]
    fn flex_slice(t: &burn::backend::flex::FlexTensor) -> Option<&[Self]> {
        t.as_slice::<f64>()
    }
}

/// The element types the kernels take; anything else keeps the backend's own operation.
pub fn is_host_dtype(dtype: DType) -> bool {
    matches!(dtype, DType::F32 | DType::F64)
}

/// The backends with host kernels, under autodiff and without.
pub(crate) fn host_backends() -> Vec<TypeId> {
    #[allow(unused_mut)]
    let mut ids = Vec::new();
    #[cfg(feature = "flex")]
    ids.extend(ids_of::<burn::backend::Flex>());
    #[cfg(feature = "ndarray")]
    {
        ids.extend(ids_of::<burn::backend::NdArray<f32>>());
        ids.extend(ids_of::<burn::backend::NdArray<f64>>());
    }
    ids
}

/// Whether `B` is one of [`host_backends`].
pub(crate) fn is_host_backend<B: Backend>() -> bool {
    host_backends().contains(&TypeId::of::<B>())
}

#[allow(dead_code)]
fn ids_of<C: Backend>() -> [TypeId; 2] {
    [
        TypeId::of::<C>(),
        TypeId::of::<burn_autodiff::Autodiff<C>>(),
    ]
}

/// A tensor's values on the host: borrowed from a contiguous flex tensor, copied otherwise
/// (the backward pass shares its inputs with the graph, so taking them would copy anyway).
/// The caller has checked that the dtype is `T`'s.
pub(crate) fn read<IB: Backend, T: Real>(t: &FloatTensor<IB>) -> Cow<'_, [T]> {
    #[cfg(feature = "flex")]
    if let Some(s) = (t as &dyn Any)
        .downcast_ref::<burn::backend::flex::FlexTensor>()
        .and_then(T::flex_slice)
    {
        return Cow::Borrowed(s);
    }
    let data = Tensor::<IB, 1>::from_primitive(TensorPrimitive::Float(t.clone()))
        .into_data()
        .into_vec::<T>();
    match data {
        Ok(v) => Cow::Owned(v),
        Err(e) => unreachable!("host kernel on a checked dtype: {e:?}"),
    }
}

/// Host values as a tensor of the inner backend.
pub(crate) fn write<IB: Backend, T: Real>(
    v: Vec<T>,
    shape: Vec<usize>,
    device: &IB::Device,
) -> FloatTensor<IB> {
    IB::float_from_data(TensorData::new(v, shape), device)
}

/// The primitive of a tensor whose backend was matched by `TypeId` as the one of `P`.
pub(crate) fn prim<B: Backend, const D: usize, P: 'static>(t: Tensor<B, D>) -> P {
    let boxed: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    match boxed.downcast::<P>() {
        Ok(p) => *p,
        Err(_) => unreachable!("the backend's TypeId was compared"),
    }
}

/// The tensor of a primitive whose backend was matched by `TypeId` as `B`.
pub(crate) fn tensor<B: Backend, const D: usize, P: 'static>(p: P) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(p);
    match boxed.downcast::<FloatTensor<B>>() {
        Ok(p) => Tensor::from_primitive(TensorPrimitive::Float(*p)),
        Err(_) => unreachable!("the backend's TypeId was compared"),
    }
}
