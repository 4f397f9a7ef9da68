import NodeKit

/// The built-in image pack: loading, saving, editing and masks. Uses only NodeKit and ImageIO.
public enum ImageNodes {
    public static let pack = NodePack(name: "images", version: "1", nodes: [
        LoadImage.self, LoadImages.self, LoadMask.self, SaveImage.self,
        ResizeImage.self, ScaleImage.self, CropImage.self, PadImage.self, FitToMultiple.self, ConvertImage.self,
        ImageToMask.self, MaskToImage.self, EditMask.self, Composite.self, MaskBlend.self,
        CropToMask.self, PasteBack.self, Canny.self, TileResample.self, InvertImage.self,
    ])
}
